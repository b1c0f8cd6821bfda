// The C module shim: exposes the OpenCL and Vulkan C APIs to Swift.
// OpenCL 1.2 is the floor the kernels are written for (PoCL reports OpenCL C 1.2).
#ifndef CGPU_H
#define CGPU_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <vulkan/vulkan.h>

// Function-like macros do not import into Swift; these wrap the ones the host code needs.
uint32_t cgpu_vk_make_api_version(uint32_t variant, uint32_t major, uint32_t minor, uint32_t patch);
uint32_t cgpu_vk_api_version_major(uint32_t version);
uint32_t cgpu_vk_api_version_minor(uint32_t version);

// Number of OpenCL platforms, or a negative OpenCL status. Used by `llm-gpu devices` and link checks.
int32_t cgpu_cl_platform_count(void);

// The OpenCL ICD loader (libOpenCL.so.1) and the Vulkan loader (libvulkan.so.1) are not linked:
// loader.c opens them with dlopen on first use, so llm-gpu starts on machines without them.
// Every cl*/vk* function above that the backends call is a trampoline that forwards to the
// loader, or returns an error status (CL_PLATFORM_NOT_FOUND_KHR, VK_ERROR_INITIALIZATION_FAILED,
// ...) when it is missing. LLM_GPU_OPENCL_LIBRARY / LLM_GPU_VULKAN_LIBRARY override the file.

// 1 when the loader was opened and exports its entry point, else 0.
int cgpu_opencl_loader_available(void);
int cgpu_vulkan_loader_available(void);
// Why the loader is unavailable, e.g. "libOpenCL.so.1 could not be loaded (cannot open shared
// object file: No such file or directory)"; "" when it is available. Never NULL.
const char *cgpu_opencl_loader_error(void);
const char *cgpu_vulkan_loader_error(void);

#endif
