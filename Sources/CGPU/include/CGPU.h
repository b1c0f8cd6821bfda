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

#endif
