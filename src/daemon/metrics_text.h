/* The Prometheus text exposition format written into a bounded buffer:
 * one writer for the /metrics page (api.c) and the blocks that jobs.c and
 * dht_api.c append to it. A write that does not fit sets `overflow` and
 * every later write is a no-op, so callers check once at the end. */
#ifndef FMD_METRICS_TEXT_H
#define FMD_METRICS_TEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct fmd_mtext {
	char *buf;
	size_t len;
	size_t cap;
	int overflow;
} fmd_mtext;

void fmd_mtext_printf(fmd_mtext *t, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* A label value with the escapes of the text format (\\, \", \n). */
void fmd_mtext_label(fmd_mtext *t, const char *value);

/* The HELP and TYPE lines of a metric family. */
void fmd_mtext_family(fmd_mtext *t, const char *name, const char *type,
                      const char *help);

/* A family with a single unlabelled sample. */
void fmd_mtext_metric(fmd_mtext *t, const char *name, const char *type,
                      const char *help, uint64_t value);

#endif
