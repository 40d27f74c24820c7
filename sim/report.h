/* What a simulation run leaves behind: results.json (and its copy without
 * host measurements, results.deterministic.json), CSV time series, SVG
 * plots when gnuplot is installed, and a summary for the terminal. The
 * layout of each file is in docs/SIMULATION.md. */
#ifndef FMS_REPORT_H
#define FMS_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "sim.h"

/* Writes every output file into dir (created if missing). scenario_file
 * goes into the host section only. Returns 0 or -errno with a message. */
int fms_report_write(const struct fms_sim *sim, const char *dir,
                     const char *scenario_file, int quiet, char *err,
                     size_t err_len);
void fms_report_summary(const struct fms_sim *sim, FILE *out);
/* Largest resident set of this process so far, in bytes. */
unsigned long long fms_peak_rss_bytes(void);

#endif
