/* What the benchmark programs print about the machine they ran on, and
 * their clock: docs/benchmarks.md records every number with its machine. */
#ifndef FM_BENCH_MACHINE_H
#define FM_BENCH_MACHINE_H

/* nproc, CPU model, kernel, libsodium and compiler, as key=value lines. */
void bench_print_machine(void);

/* CLOCK_MONOTONIC in seconds. */
double bench_now_s(void);

#endif
