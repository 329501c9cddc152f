#ifndef CTRAILFUZZ_H
#define CTRAILFUZZ_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, LLVM >= 11): parses libFuzzer's flags from argv and fuzzes `callback`.
/// Only a `-sanitize=fuzzer` link provides it; TrailFuzz calls it only when built for fuzzing (TRAIL_LIBFUZZER).
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
