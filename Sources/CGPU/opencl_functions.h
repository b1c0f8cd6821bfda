// Every OpenCL entry point the Swift code calls, as an X-macro table for loader.c.
// Hand-maintained: a call added in Swift without a line here fails to link ("undefined
// reference to clFoo"), since llm-gpu no longer links libOpenCL. Copy the prototype from
// <CL/cl.h> exactly: loader.c defines each function against the header's declaration, so
// a wrong parameter list is a compile error, not a silent ABI mismatch.
//
//   CL_FN(return type, name, (parameters), (arguments), what to do when the loader or symbol is missing)
//
// The fallbacks: platform discovery reports CL_PLATFORM_NOT_FOUND_KHR (what the ICD loader
// itself says with no driver), so callers take their "no OpenCL" path; calls on objects that
// cannot exist without a loader report an error status; creators set *errcode_ret and return NULL.

#define CL_RETURN(status) return (status);
#define CL_RETURN_NULL(status) { if (errcode_ret) *errcode_ret = (status); return NULL; }

// Platforms and devices
CL_FN(cl_int, clGetPlatformIDs,
      (cl_uint num_entries, cl_platform_id *platforms, cl_uint *num_platforms),
      (num_entries, platforms, num_platforms),
      { if (num_platforms) *num_platforms = 0; return CL_PLATFORM_NOT_FOUND_KHR; })
CL_FN(cl_int, clGetPlatformInfo,
      (cl_platform_id platform, cl_platform_info param_name, size_t param_value_size, void *param_value, size_t *param_value_size_ret),
      (platform, param_name, param_value_size, param_value, param_value_size_ret),
      CL_RETURN(CL_INVALID_PLATFORM))
CL_FN(cl_int, clGetDeviceIDs,
      (cl_platform_id platform, cl_device_type device_type, cl_uint num_entries, cl_device_id *devices, cl_uint *num_devices),
      (platform, device_type, num_entries, devices, num_devices),
      { if (num_devices) *num_devices = 0; return CL_INVALID_PLATFORM; })
CL_FN(cl_int, clGetDeviceInfo,
      (cl_device_id device, cl_device_info param_name, size_t param_value_size, void *param_value, size_t *param_value_size_ret),
      (device, param_name, param_value_size, param_value, param_value_size_ret),
      CL_RETURN(CL_INVALID_DEVICE))

// Contexts and queues
CL_FN(cl_context, clCreateContext,
      (const cl_context_properties *properties, cl_uint num_devices, const cl_device_id *devices,
       void (CL_CALLBACK *pfn_notify)(const char *errinfo, const void *private_info, size_t cb, void *user_data),
       void *user_data, cl_int *errcode_ret),
      (properties, num_devices, devices, pfn_notify, user_data, errcode_ret),
      CL_RETURN_NULL(CL_INVALID_PLATFORM))
CL_FN(cl_int, clReleaseContext, (cl_context context), (context), CL_RETURN(CL_INVALID_CONTEXT))
CL_FN(cl_command_queue, clCreateCommandQueue,
      (cl_context context, cl_device_id device, cl_command_queue_properties properties, cl_int *errcode_ret),
      (context, device, properties, errcode_ret),
      CL_RETURN_NULL(CL_INVALID_CONTEXT))
CL_FN(cl_int, clReleaseCommandQueue, (cl_command_queue command_queue), (command_queue), CL_RETURN(CL_INVALID_COMMAND_QUEUE))
CL_FN(cl_int, clFlush, (cl_command_queue command_queue), (command_queue), CL_RETURN(CL_INVALID_COMMAND_QUEUE))
CL_FN(cl_int, clFinish, (cl_command_queue command_queue), (command_queue), CL_RETURN(CL_INVALID_COMMAND_QUEUE))

// Buffers
CL_FN(cl_mem, clCreateBuffer,
      (cl_context context, cl_mem_flags flags, size_t size, void *host_ptr, cl_int *errcode_ret),
      (context, flags, size, host_ptr, errcode_ret),
      CL_RETURN_NULL(CL_INVALID_CONTEXT))
CL_FN(cl_int, clReleaseMemObject, (cl_mem memobj), (memobj), CL_RETURN(CL_INVALID_MEM_OBJECT))
CL_FN(cl_int, clEnqueueReadBuffer,
      (cl_command_queue command_queue, cl_mem buffer, cl_bool blocking_read, size_t offset, size_t size, void *ptr,
       cl_uint num_events_in_wait_list, const cl_event *event_wait_list, cl_event *event),
      (command_queue, buffer, blocking_read, offset, size, ptr, num_events_in_wait_list, event_wait_list, event),
      CL_RETURN(CL_INVALID_COMMAND_QUEUE))
CL_FN(cl_int, clEnqueueWriteBuffer,
      (cl_command_queue command_queue, cl_mem buffer, cl_bool blocking_write, size_t offset, size_t size, const void *ptr,
       cl_uint num_events_in_wait_list, const cl_event *event_wait_list, cl_event *event),
      (command_queue, buffer, blocking_write, offset, size, ptr, num_events_in_wait_list, event_wait_list, event),
      CL_RETURN(CL_INVALID_COMMAND_QUEUE))
CL_FN(cl_int, clEnqueueCopyBuffer,
      (cl_command_queue command_queue, cl_mem src_buffer, cl_mem dst_buffer, size_t src_offset, size_t dst_offset, size_t size,
       cl_uint num_events_in_wait_list, const cl_event *event_wait_list, cl_event *event),
      (command_queue, src_buffer, dst_buffer, src_offset, dst_offset, size, num_events_in_wait_list, event_wait_list, event),
      CL_RETURN(CL_INVALID_COMMAND_QUEUE))
CL_FN(cl_int, clEnqueueFillBuffer,
      (cl_command_queue command_queue, cl_mem buffer, const void *pattern, size_t pattern_size, size_t offset, size_t size,
       cl_uint num_events_in_wait_list, const cl_event *event_wait_list, cl_event *event),
      (command_queue, buffer, pattern, pattern_size, offset, size, num_events_in_wait_list, event_wait_list, event),
      CL_RETURN(CL_INVALID_COMMAND_QUEUE))

// Programs and kernels
CL_FN(cl_program, clCreateProgramWithSource,
      (cl_context context, cl_uint count, const char **strings, const size_t *lengths, cl_int *errcode_ret),
      (context, count, strings, lengths, errcode_ret),
      CL_RETURN_NULL(CL_INVALID_CONTEXT))
CL_FN(cl_int, clBuildProgram,
      (cl_program program, cl_uint num_devices, const cl_device_id *device_list, const char *options,
       void (CL_CALLBACK *pfn_notify)(cl_program program, void *user_data), void *user_data),
      (program, num_devices, device_list, options, pfn_notify, user_data),
      CL_RETURN(CL_INVALID_PROGRAM))
CL_FN(cl_int, clGetProgramBuildInfo,
      (cl_program program, cl_device_id device, cl_program_build_info param_name, size_t param_value_size, void *param_value,
       size_t *param_value_size_ret),
      (program, device, param_name, param_value_size, param_value, param_value_size_ret),
      CL_RETURN(CL_INVALID_PROGRAM))
CL_FN(cl_int, clReleaseProgram, (cl_program program), (program), CL_RETURN(CL_INVALID_PROGRAM))
CL_FN(cl_kernel, clCreateKernel,
      (cl_program program, const char *kernel_name, cl_int *errcode_ret),
      (program, kernel_name, errcode_ret),
      CL_RETURN_NULL(CL_INVALID_PROGRAM))
CL_FN(cl_int, clReleaseKernel, (cl_kernel kernel), (kernel), CL_RETURN(CL_INVALID_KERNEL))
CL_FN(cl_int, clSetKernelArg,
      (cl_kernel kernel, cl_uint arg_index, size_t arg_size, const void *arg_value),
      (kernel, arg_index, arg_size, arg_value),
      CL_RETURN(CL_INVALID_KERNEL))
CL_FN(cl_int, clGetKernelWorkGroupInfo,
      (cl_kernel kernel, cl_device_id device, cl_kernel_work_group_info param_name, size_t param_value_size, void *param_value,
       size_t *param_value_size_ret),
      (kernel, device, param_name, param_value_size, param_value, param_value_size_ret),
      CL_RETURN(CL_INVALID_KERNEL))
CL_FN(cl_int, clEnqueueNDRangeKernel,
      (cl_command_queue command_queue, cl_kernel kernel, cl_uint work_dim, const size_t *global_work_offset,
       const size_t *global_work_size, const size_t *local_work_size,
       cl_uint num_events_in_wait_list, const cl_event *event_wait_list, cl_event *event),
      (command_queue, kernel, work_dim, global_work_offset, global_work_size, local_work_size,
       num_events_in_wait_list, event_wait_list, event),
      CL_RETURN(CL_INVALID_COMMAND_QUEUE))

// Events (timing)
CL_FN(cl_int, clWaitForEvents, (cl_uint num_events, const cl_event *event_list), (num_events, event_list), CL_RETURN(CL_INVALID_EVENT))
CL_FN(cl_int, clReleaseEvent, (cl_event event), (event), CL_RETURN(CL_INVALID_EVENT))
CL_FN(cl_int, clGetEventProfilingInfo,
      (cl_event event, cl_profiling_info param_name, size_t param_value_size, void *param_value, size_t *param_value_size_ret),
      (event, param_name, param_value_size, param_value, param_value_size_ret),
      CL_RETURN(CL_INVALID_EVENT))

#undef CL_RETURN
#undef CL_RETURN_NULL
