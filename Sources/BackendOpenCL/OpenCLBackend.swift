// The OpenCL backend (issue #3) lives here.
import LLM
