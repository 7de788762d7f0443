/*
 * fuzz.h -- the one entry point every fuzz target defines.
 *
 * Built two ways (tests/fuzz/CMakeLists.txt): with clang and
 * -fsanitize=fuzzer (SA_FUZZ=ON), libFuzzer calls it; in every other build,
 * replay.c calls it for each file of the seed corpus and of the saved crash
 * inputs, so they run as regression tests under gcc, ASan or valgrind.
 *
 * A target aborts (FUZZ_CHECK) when a property it checks does not hold, so
 * a wrong answer is a crash too, not only a memory error.
 */
#ifndef SA_FUZZ_H
#define SA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);                  \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#endif
