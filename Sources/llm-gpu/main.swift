import LLM
print("llm-gpu")
