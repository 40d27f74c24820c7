/* fedmeshd's log sink. Text for people at a terminal, JSON lines for
 * journald and log shippers; both carry the same fields. Writes go straight
 * to the sink with one fputs per line so concurrent writers (there is only
 * the loop thread today) cannot interleave inside a line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"

/* Longest message we format; longer ones are cut. */
#define FMD_LOG_MSG_MAX 1024

static FILE *log_sink;
static enum fmd_log_format log_format = FMD_LOG_TEXT;
static enum fm_log_level log_max = FM_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void fmd_log_init(FILE *sink, enum fmd_log_format format,
                  enum fm_log_level max_level)
{
	log_sink = sink;
	log_format = format;
	log_max = max_level;
}

int fmd_log_level_parse(const char *text, enum fm_log_level *out)
{
	size_t i;

	if (text == NULL)
		return -EINVAL;
	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(text, level_names[i]) == 0) {
			*out = (enum fm_log_level)i;
			return 0;
		}
	}
	if (strcmp(text, "warning") == 0) {
		*out = FM_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

const char *fmd_log_level_name(enum fm_log_level level)
{
	if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
		return level_names[level];
	return "unknown";
}

int fmd_log_format_parse(const char *text, enum fmd_log_format *out)
{
	if (text != NULL && strcmp(text, "text") == 0) {
		*out = FMD_LOG_TEXT;
		return 0;
	}
	if (text != NULL && strcmp(text, "json") == 0) {
		*out = FMD_LOG_JSON;
		return 0;
	}
	return -EINVAL;
}

const char *fmd_log_format_name(enum fmd_log_format format)
{
	return format == FMD_LOG_JSON ? "json" : "text";
}

static void format_time(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03dZ", base,
	         (int)((ts.tv_nsec / 1000000L) % 1000));
}

static void write_json(const char *ts, enum fm_log_level level,
                       const char *subsystem, const char *peer, const char *job,
                       const char *msg, FILE *sink)
{
	json_t *obj = json_object();
	char *line = NULL;

	if (obj == NULL)
		return;
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level",
	                    json_string(fmd_log_level_name(level)));
	json_object_set_new(obj, "subsystem", json_string(subsystem));
	/* json_string rejects invalid UTF-8; keep the line rather than lose it.
	 */
	json_object_set_new(obj, "msg", json_stringn_nocheck(msg, strlen(msg)));
	if (peer != NULL)
		json_object_set_new(obj, "peer", json_string(peer));
	if (job != NULL)
		json_object_set_new(obj, "job", json_string(job));
	line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (line != NULL) {
		fprintf(sink, "%s\n", line);
		free(line);
	}
	json_decref(obj);
}

void fmd_log_ids(enum fm_log_level level, const char *subsystem,
                 const char *peer, const char *job, const char *fmt, ...)
{
	char msg[FMD_LOG_MSG_MAX];
	char ts[64];
	FILE *sink = log_sink != NULL ? log_sink : stderr;
	va_list ap;

	if (level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	format_time(ts, sizeof(ts));
	if (log_format == FMD_LOG_JSON) {
		write_json(ts, level, subsystem, peer, job, msg, sink);
	} else {
		fprintf(sink, "%s %-5s %-6s %s%s%s%s%s\n", ts,
		        fmd_log_level_name(level), subsystem, msg,
		        peer != NULL ? " peer=" : "", peer != NULL ? peer : "",
		        job != NULL ? " job=" : "", job != NULL ? job : "");
	}
	fflush(sink);
}
