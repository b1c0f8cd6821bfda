#!/usr/bin/env python3
"""Writes the gguf fuzz target's seeds: llama models of a few KB (dim 8, one layer, 8 tokens), one
with a SentencePiece vocabulary and one with a byte-level BPE one, so each mutation is cheap to
load and run. Run from the repository root: python3 Fuzz/make_seeds.py"""
import random
import struct

def string(s):
    b = s.encode()
    return struct.pack('<Q', len(b)) + b

def value(v):
    # (GGUF type tag, payload) for the value kinds these seeds use.
    if isinstance(v, bool): return 7, struct.pack('<?', v)
    if isinstance(v, int): return 4, struct.pack('<I', v)
    if isinstance(v, float): return 6, struct.pack('<f', v)
    if isinstance(v, str): return 8, string(v)
    tag, _ = value(v[0])
    return 9, struct.pack('<IQ', tag, len(v)) + b''.join(value(x)[1] for x in v)

def gguf(metadata, tensors, alignment=32):
    out = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(metadata))
    for key, v in metadata:
        tag, payload = value(v)
        out += string(key) + struct.pack('<I', tag) + payload
    offset, data = 0, b''
    for name, dims, values in tensors:
        out += string(name) + struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', d) for d in dims)
        out += struct.pack('<IQ', 0, offset)  # F32
        blob = struct.pack(f'<{len(values)}f', *values)
        blob += b'\0' * (-len(blob) % alignment)
        data += blob
        offset += len(blob)
    out += b'\0' * (-len(out) % alignment)
    return out + data

def model(tokenizer):
    rng = random.Random(1)
    dim, heads, kv, head_dim, ff, vocab = 8, 2, 1, 4, 8, 8
    a = 'llama'
    meta = [('general.architecture', a), (f'{a}.context_length', 64), (f'{a}.embedding_length', dim),
            (f'{a}.block_count', 1), (f'{a}.feed_forward_length', ff), (f'{a}.attention.head_count', heads),
            (f'{a}.attention.head_count_kv', kv), (f'{a}.rope.dimension_count', head_dim),
            (f'{a}.rope.freq_base', 10000.0), (f'{a}.attention.layer_norm_rms_epsilon', 1e-5)]
    meta += tokenizer
    w = lambda n: [rng.gauss(0, 0.5) for _ in range(n)]
    ones = lambda n: [1.0] * n
    tensors = [('token_embd.weight', [dim, vocab], w(dim * vocab)),
               ('blk.0.attn_norm.weight', [dim], ones(dim)),
               ('blk.0.attn_q.weight', [dim, heads * head_dim], w(dim * heads * head_dim)),
               ('blk.0.attn_k.weight', [dim, kv * head_dim], w(dim * kv * head_dim)),
               ('blk.0.attn_v.weight', [dim, kv * head_dim], w(dim * kv * head_dim)),
               ('blk.0.attn_output.weight', [heads * head_dim, dim], w(dim * heads * head_dim)),
               ('blk.0.ffn_norm.weight', [dim], ones(dim)),
               ('blk.0.ffn_gate.weight', [dim, ff], w(dim * ff)),
               ('blk.0.ffn_up.weight', [dim, ff], w(dim * ff)),
               ('blk.0.ffn_down.weight', [ff, dim], w(dim * ff)),
               ('output_norm.weight', [dim], ones(dim)),
               ('output.weight', [dim, vocab], w(dim * vocab))]
    return gguf(meta, tensors)

spm = [('tokenizer.ggml.model', 'llama'),
       ('tokenizer.ggml.tokens', ['<unk>', '<s>', '</s>', '\u2581', 'a', 'b', '\u2581a', 'ab']),
       ('tokenizer.ggml.scores', [0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -0.5, -0.7]),
       ('tokenizer.ggml.token_type', [2, 3, 3, 1, 1, 1, 1, 1]),
       ('tokenizer.ggml.unknown_token_id', 0), ('tokenizer.ggml.bos_token_id', 1),
       ('tokenizer.ggml.eos_token_id', 2), ('tokenizer.ggml.add_bos_token', True)]
bpe = [('tokenizer.ggml.model', 'gpt2'), ('tokenizer.ggml.pre', 'gpt2'),
       ('tokenizer.ggml.tokens', ['<|endoftext|>', 'a', 'b', '\u0120', '\u0120a', 'ab', 'c', '<|im_start|>']),
       ('tokenizer.ggml.token_type', [3, 1, 1, 1, 1, 1, 1, 3]),
       ('tokenizer.ggml.merges', ['\u0120 a', 'a b']),
       ('tokenizer.ggml.bos_token_id', 0), ('tokenizer.ggml.eos_token_id', 0),
       ('tokenizer.chat_template', "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")]
for name, tok in [('llama-spm', spm), ('llama-bpe', bpe)]:
    with open(f'Fuzz/corpus/gguf/{name}.gguf', 'wb') as f:
        f.write(model(tok))
