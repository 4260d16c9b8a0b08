/*
 * Test control API of senet's CANN emulator (libsenet_cann_emu.so). Not part of CANN: these
 * symbols exist only in the emulator, so a test can check for them with dlsym.
 *
 * Environment variables read at aclInit:
 *   SENET_EMU_DEVICES       number of devices (default 8)
 *   SENET_EMU_SOC           aclrtGetSocName (default "Ascend910B1"), which picks the product line
 *                           whose documented contract (shared/reference/aclnn-contract.json) the
 *                           emulator enforces: Ascend910A/ProA/B/ProB/PremiumA = first-generation
 *                           910, Ascend910B1..B4 = A2, Ascend910_93xx = A3 (also Ascend950*,
 *                           Ascend310P*, Ascend310B*); any other name fails aclInit
 *   SENET_EMU_CANN_VERSION  the CANN release whose docs apply: 8.0 or 9.1 (default 9.1)
 *   SENET_EMU_HBM_BYTES     memory per device (default 32 GiB)
 *   SENET_EMU_FAIL          function:afterCalls:code[,...], as senetEmuInjectFailure
 * Read at the first call:
 *   SENET_EMU_STATS         FILE: at process exit (and at aclFinalize) the emulator writes FILE,
 *                           a JSON object {"function": calls} of every CANN function called;
 *                           "{pid}" in FILE is replaced by the process id
 */
#ifndef SENET_EMU_H
#define SENET_EMU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The (afterCalls + 1)-th call of `function`, counted from now, returns `code` (with an
 * aclGetRecentErrMsg text saying the failure was injected) instead of doing its work. */
void senetEmuInjectFailure(const char *function, uint32_t afterCalls, int32_t code);
/* Drops every pending injected failure. */
void senetEmuClearFailures(void);
/* Live device allocations (aclrtMalloc not yet freed), all devices. */
uint64_t senetEmuLiveAllocations(void);
/* Bytes those allocations reserve (align_up(size, 32) + 32 each). */
uint64_t senetEmuLiveBytes(void);
/* Live aclnn objects: tensors, scalars, arrays, tensor lists, executors. */
uint64_t senetEmuLiveObjects(void);
/* Calls of the exported function `function` since the process started. */
uint64_t senetEmuCallCount(const char *function);

#ifdef __cplusplus
}
#endif

#endif /* SENET_EMU_H */
