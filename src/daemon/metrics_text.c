/* Bounded Prometheus text writer (metrics_text.h). */
#include "metrics_text.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

void fmd_mtext_printf(fmd_mtext *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= t->cap - t->len) {
		t->overflow = 1;
		return;
	}
	t->len += (size_t)n;
}

void fmd_mtext_label(fmd_mtext *t, const char *value)
{
	for (; value != NULL && *value != '\0' && !t->overflow; value++) {
		if (*value == '\\' || *value == '"')
			fmd_mtext_printf(t, "\\%c", *value);
		else if (*value == '\n')
			fmd_mtext_printf(t, "\\n");
		else
			fmd_mtext_printf(t, "%c", *value);
	}
}

void fmd_mtext_family(fmd_mtext *t, const char *name, const char *type,
                      const char *help)
{
	fmd_mtext_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
	                 type);
}

void fmd_mtext_metric(fmd_mtext *t, const char *name, const char *type,
                      const char *help, uint64_t value)
{
	fmd_mtext_family(t, name, type, help);
	fmd_mtext_printf(t, "%s %" PRIu64 "\n", name, value);
}
