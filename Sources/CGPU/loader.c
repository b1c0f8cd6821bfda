// Run-time loading of the OpenCL ICD loader and the Vulkan loader.
//
// llm-gpu does not link libOpenCL or libvulkan: a CPU-only machine has neither, and
// `--backend cpu` must start there. Instead every cl*/vk* function the Swift code calls is
// defined here as a trampoline with the header's exact prototype. The first call of either
// family dlopens its loader once (pthread_once) and resolves the whole table with dlsym;
// each trampoline then forwards, or, when the library or the symbol is missing, returns the
// error status its table line names (opencl_functions.h, vulkan_functions.h) instead of crashing.
//
// LLM_GPU_OPENCL_LIBRARY / LLM_GPU_VULKAN_LIBRARY name another file to load instead (tests
// point them at a missing file to play a machine without the loaders).

#include "CGPU.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The trampolines are hidden: they are linked into llm-gpu and the test bundle but not
// exported, so they never interpose on the real symbols inside the loaders or drivers.
#define CGPU_TRAMPOLINE __attribute__((visibility("hidden")))

// One family's loader: where to look, what was found, and why not.
struct library {
    const char *environment;    // override variable
    const char *names[2];       // tried in order: the versioned soname, then the development name
    const char *required;       // the symbol that makes the library usable at all
    pthread_once_t once;
    void *handle;
    int available;
    char error[512];
};

static struct library opencl = {
    .environment = "LLM_GPU_OPENCL_LIBRARY", .names = {"libOpenCL.so.1", "libOpenCL.so"},
    .required = "clGetPlatformIDs", .once = PTHREAD_ONCE_INIT,
};
static struct library vulkan = {
    .environment = "LLM_GPU_VULKAN_LIBRARY", .names = {"libvulkan.so.1", "libvulkan.so"},
    .required = "vkGetInstanceProcAddr", .once = PTHREAD_ONCE_INIT,
};

// "libfoo.so.1: cannot open shared object file: ..." reads better without the repeated name.
static const char *without_prefix(const char *message, const char *name) {
    size_t length = strlen(name);
    if (strncmp(message, name, length) == 0 && message[length] == ':') {
        message += length + 1;
        while (*message == ' ') message++;
    }
    return message;
}

static void open_library(struct library *library) {
    const char *override = getenv(library->environment);
    const char *first = (override && *override) ? override : library->names[0];
    char reason[384] = "";
    const char *tried[2] = {first, (override && *override) ? NULL : library->names[1]};
    for (int i = 0; i < 2 && tried[i] && !library->handle; i++) {
        library->handle = dlopen(tried[i], RTLD_NOW | RTLD_LOCAL);
        if (!library->handle && i == 0) {
            const char *message = dlerror();
            snprintf(reason, sizeof reason, "%s", message ? without_prefix(message, first) : "unknown dlopen error");
        }
    }
    if (!library->handle) {
        snprintf(library->error, sizeof library->error, "%s could not be loaded (%s)", first, reason);
        return;
    }
    if (!dlsym(library->handle, library->required)) {
        snprintf(library->error, sizeof library->error, "%s was loaded but has no %s; it is not a working loader", first, library->required);
        return;
    }
    library->available = 1;
}

// ---- OpenCL ----------------------------------------------------------------------------

#define CL_FN(ret, name, params, args, fallback) static __typeof__(name) *cgpu_cl_##name;
#include "opencl_functions.h"
#undef CL_FN

static void load_opencl(void) {
    open_library(&opencl);
    if (!opencl.available) return;
#define CL_FN(ret, name, params, args, fallback) cgpu_cl_##name = (__typeof__(name) *)dlsym(opencl.handle, #name);
#include "opencl_functions.h"
#undef CL_FN
}

#define CL_FN(ret, name, params, args, fallback)                        \
    CGPU_TRAMPOLINE CL_API_ENTRY ret CL_API_CALL name params {            \
        pthread_once(&opencl.once, load_opencl);                          \
        if (!cgpu_cl_##name) fallback                                     \
        return cgpu_cl_##name args;                                       \
    }
#include "opencl_functions.h"
#undef CL_FN

// ---- Vulkan ----------------------------------------------------------------------------

#define VK_FN(ret, name, params, args, fallback) static PFN_##name cgpu_vk_##name;
#define VK_VOID_FN(name, params, args, fallback) static PFN_##name cgpu_vk_##name;
#include "vulkan_functions.h"
#undef VK_FN
#undef VK_VOID_FN

static void load_vulkan(void) {
    open_library(&vulkan);
    if (!vulkan.available) return;
#define VK_FN(ret, name, params, args, fallback) cgpu_vk_##name = (PFN_##name)dlsym(vulkan.handle, #name);
#define VK_VOID_FN(name, params, args, fallback) cgpu_vk_##name = (PFN_##name)dlsym(vulkan.handle, #name);
#include "vulkan_functions.h"
#undef VK_FN
#undef VK_VOID_FN
}

#define VK_FN(ret, name, params, args, fallback)                        \
    CGPU_TRAMPOLINE VKAPI_ATTR ret VKAPI_CALL name params {               \
        pthread_once(&vulkan.once, load_vulkan);                          \
        if (!cgpu_vk_##name) fallback                                     \
        return cgpu_vk_##name args;                                       \
    }
#define VK_VOID_FN(name, params, args, fallback)                        \
    CGPU_TRAMPOLINE VKAPI_ATTR void VKAPI_CALL name params {              \
        pthread_once(&vulkan.once, load_vulkan);                          \
        if (!cgpu_vk_##name) fallback                                     \
        cgpu_vk_##name args;                                              \
    }
#include "vulkan_functions.h"
#undef VK_FN
#undef VK_VOID_FN

// ---- Status ----------------------------------------------------------------------------

int cgpu_opencl_loader_available(void) {
    pthread_once(&opencl.once, load_opencl);
    return opencl.available;
}

int cgpu_vulkan_loader_available(void) {
    pthread_once(&vulkan.once, load_vulkan);
    return vulkan.available;
}

const char *cgpu_opencl_loader_error(void) {
    pthread_once(&opencl.once, load_opencl);
    return opencl.error;
}

const char *cgpu_vulkan_loader_error(void) {
    pthread_once(&vulkan.once, load_vulkan);
    return vulkan.error;
}
