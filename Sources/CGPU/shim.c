#include "CGPU.h"

uint32_t cgpu_vk_make_api_version(uint32_t variant, uint32_t major, uint32_t minor, uint32_t patch) {
    return VK_MAKE_API_VERSION(variant, major, minor, patch);
}

uint32_t cgpu_vk_api_version_major(uint32_t version) { return VK_API_VERSION_MAJOR(version); }
uint32_t cgpu_vk_api_version_minor(uint32_t version) { return VK_API_VERSION_MINOR(version); }

int32_t cgpu_cl_platform_count(void) {
    cl_uint count = 0;
    cl_int status = clGetPlatformIDs(0, NULL, &count);
    if (status == CL_PLATFORM_NOT_FOUND_KHR) return 0;  // ICD loader with no platforms installed
    if (status != CL_SUCCESS) return status;
    return (int32_t)count;
}
