// The Vulkan backend (issue #4) lives here.
import LLM
