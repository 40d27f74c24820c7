/* fedmeshd configuration. Three layers, each overriding the one before:
 * embedded defaults (so no file is ever needed), an optional INI file, and
 * command-line flags. The file is read whole (bounded) and handed to inih's
 * string parser, so a config from the network or a fuzzer meets the same
 * limits as one from disk. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ini.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"

/* inih (Debian build) reads lines into a 200-byte buffer and would split a
 * longer one; we refuse such lines instead of misreading them. */
#define FMD_CONFIG_LINE_MAX 199

enum {
	OPT_LISTEN = 256,
	OPT_API,
	OPT_BOOTSTRAP,
	OPT_LOG_FORMAT,
	OPT_LOG_LEVEL,
	OPT_ALLOW_ROOT,
	OPT_PRINT_CONFIG,
	OPT_ADVERTISE,
	OPT_JOIN,
	OPT_NO_MDNS,
	OPT_NO_BEACON,
	OPT_MDNS_INTERFACE,
	OPT_MDNS_EXCLUDE,
	OPT_MDNS_HOSTNAME,
	OPT_NO_DHT,
	OPT_DHT_SUBNET_MAX,
};

static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"state-dir", required_argument, NULL, 's'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"api", required_argument, NULL, OPT_API},
        {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
        {"advertise", required_argument, NULL, OPT_ADVERTISE},
        {"join", required_argument, NULL, OPT_JOIN},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"allow-root", no_argument, NULL, OPT_ALLOW_ROOT},
        {"no-mdns", no_argument, NULL, OPT_NO_MDNS},
        {"no-beacon", no_argument, NULL, OPT_NO_BEACON},
        {"mdns-interface", required_argument, NULL, OPT_MDNS_INTERFACE},
        {"mdns-exclude", required_argument, NULL, OPT_MDNS_EXCLUDE},
        {"mdns-hostname", required_argument, NULL, OPT_MDNS_HOSTNAME},
        {"no-dht", no_argument, NULL, OPT_NO_DHT},
        {"dht-subnet-max", required_argument, NULL, OPT_DHT_SUBNET_MAX},
        {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
};
static const char short_options[] = "+c:s:hV";

static int copy_str(char *dst, size_t dst_len, const char *src)
{
	size_t len = strlen(src);

	if (len >= dst_len)
		return -ENAMETOOLONG;
	memcpy(dst, src, len + 1);
	return 0;
}

void fmd_config_defaults(fmd_config *cfg, const char *xdg_state_home,
                         const char *home)
{
	memset(cfg, 0, sizeof(*cfg));
	/* XDG says a relative XDG_STATE_HOME is invalid and must be ignored. */
	if (xdg_state_home != NULL && xdg_state_home[0] == '/')
		snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s/fedmesh",
		         xdg_state_home);
	else if (home != NULL && home[0] != '\0')
		snprintf(cfg->state_dir, sizeof(cfg->state_dir),
		         "%s/.local/state/fedmesh", home);
	else
		cfg->state_dir[0] = '\0'; /* resolve() reports it */
	copy_str(cfg->listen, sizeof(cfg->listen), FMD_DEFAULT_LISTEN);
	copy_str(cfg->api, sizeof(cfg->api), FMD_DEFAULT_API);
	cfg->log_format = FMD_LOG_TEXT;
	cfg->log_level = FM_LOG_INFO;
	cfg->allow_root = 0;
	cfg->mdns = 1;
	cfg->beacon = 1;
	cfg->dht = 1;
	fmd_jobs_config_defaults(&cfg->jobs);
	cfg->limits.connections_max = FMD_LIMIT_CONNECTIONS_DEFAULT;
	cfg->limits.handshakes_max = FMD_LIMIT_HANDSHAKES_DEFAULT;
	cfg->limits.source_handshakes_per_s = FMD_LIMIT_SOURCE_RATE_DEFAULT;
	cfg->limits.jobs_pending_max = FMD_LIMIT_JOBS_PENDING_DEFAULT;
	cfg->limits.peer_queue_max_bytes = FMD_LIMIT_PEER_QUEUE_DEFAULT_BYTES;
}

int fmd_config_check_addr(const char *text)
{
	fm_addr addr;

	return fm_addr_parse(text, &addr);
}

int fmd_addr_is_wildcard(const fm_addr *addr)
{
	static const uint8_t zero[16];

	if (addr->family == FM_AF_INET)
		return memcmp(addr->ip, zero, 4) == 0;
	if (addr->family == FM_AF_INET6)
		return memcmp(addr->ip, zero, 16) == 0;
	return 0;
}

/* What others can dial: a port, and an address that is not a wildcard. */
static int check_advertise(const char *text)
{
	fm_addr addr;

	if (fm_addr_parse(text, &addr) != 0 || addr.port == 0 ||
	    fmd_addr_is_wildcard(&addr))
		return -EINVAL;
	return 0;
}

/* A decimal number from min to max, nothing else on the line. */
static int parse_uint_range(const char *text, unsigned long min,
                            unsigned long max, unsigned *out)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
	    n < min || n > max)
		return -EINVAL;
	*out = (unsigned)n;
	return 0;
}

/* [limits]: each key, its bounds, and where it goes. */
static int set_limit(fmd_limits_config *l, const char *key, const char *value,
                     char *err, size_t err_len)
{
	static const struct {
		const char *key;
		unsigned long min, max;
		size_t offset;
	} keys[] = {
	        {"connections_max", 1, FMD_LIMIT_CONNECTIONS_MAX,
	         offsetof(fmd_limits_config, connections_max)},
	        {"handshakes_max", 1, FMD_LIMIT_HANDSHAKES_MAX,
	         offsetof(fmd_limits_config, handshakes_max)},
	        {"source_handshakes_per_s", 1, FMD_LIMIT_SOURCE_RATE_MAX,
	         offsetof(fmd_limits_config, source_handshakes_per_s)},
	        {"jobs_pending_max", 1, FMD_LIMIT_JOBS_PENDING_MAX,
	         offsetof(fmd_limits_config, jobs_pending_max)},
	};
	size_t i;

	if (strcmp(key, "peer_queue_max") == 0) {
		uint64_t n;
		if (fmd_parse_size(value, &n) != 0 ||
		    n < FMD_LIMIT_PEER_QUEUE_MIN_BYTES ||
		    n > FMD_LIMIT_PEER_QUEUE_MAX_BYTES) {
			snprintf(err, err_len,
			         "[limits] peer_queue_max must be a size from "
			         "64K to 1G, not '%s'",
			         value);
			return -EINVAL;
		}
		l->peer_queue_max_bytes = n;
		return 0;
	}
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(key, keys[i].key) != 0)
			continue;
		if (parse_uint_range(
		            value, keys[i].min, keys[i].max,
		            (unsigned *)((char *)l + keys[i].offset)) != 0) {
			snprintf(err, err_len,
			         "[limits] %s must be a number from %lu to "
			         "%lu, not '%s'",
			         key, keys[i].min, keys[i].max, value);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(err, err_len, "unknown option [limits] %s", key);
	return -EINVAL;
}

static int parse_bool(const char *text, int *out)
{
	if (strcasecmp(text, "true") == 0 || strcasecmp(text, "yes") == 0 ||
	    strcmp(text, "1") == 0 || strcasecmp(text, "on") == 0) {
		*out = 1;
		return 0;
	}
	if (strcasecmp(text, "false") == 0 || strcasecmp(text, "no") == 0 ||
	    strcmp(text, "0") == 0 || strcasecmp(text, "off") == 0) {
		*out = 0;
		return 0;
	}
	return -EINVAL;
}

/* One interface name pattern: what fnmatch() takes, without the
 * separators and spaces of the list syntax, and without ';', which
 * starts a comment where --print-config writes the pattern after "= "
 * (found by fuzz/fuzz_config.c). */
static int check_iface_pattern(const char *p, size_t len)
{
	size_t i;

	if (len == 0 || len > FMD_IFACE_PATTERN_MAX)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if (p[i] <= ' ' || p[i] > '~' || p[i] == ',' || p[i] == '/' ||
		    p[i] == ';')
			return -EINVAL;
	return 0;
}

/* "name,name,..." appended to a pattern list; spaces around names are
 * allowed. The list is only changed when every name is valid. */
static int add_iface_patterns(char (*list)[FMD_IFACE_PATTERN_MAX + 1],
                              size_t *count, const char *value,
                              const char *what, char *err, size_t err_len)
{
	size_t n = *count;
	const char *p = value;

	for (;;) {
		const char *end;
		size_t len;

		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strcspn(p, ",");
		len = (size_t)(end - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (check_iface_pattern(p, len) != 0) {
			snprintf(err, err_len,
			         "[discovery] %s: '%.*s' is not an interface "
			         "name or pattern (1 to %d printable "
			         "characters, no spaces, ',', '/' or ';')",
			         what, (int)(len > 64 ? 64 : len), p,
			         FMD_IFACE_PATTERN_MAX);
			return -EINVAL;
		}
		if (n >= FMD_IFACE_PATTERNS_MAX) {
			snprintf(err, err_len,
			         "[discovery] %s: at most %d interface names",
			         what, FMD_IFACE_PATTERNS_MAX);
			return -E2BIG;
		}
		memcpy(list[n], p, len);
		list[n][len] = '\0';
		n++;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	*count = n;
	return 0;
}

/* An mDNS host label: letters, digits and '-', not at either end. */
static int check_hostname(const char *name)
{
	size_t len = strlen(name);
	size_t i;

	if (len == 0 || len > FM_HOSTNAME_MAX || name[0] == '-' ||
	    name[len - 1] == '-')
		return -EINVAL;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return -EINVAL;
	return 0;
}

/* One option, from the file or a flag: the same checks for both. */
static int set_option(fmd_config *cfg, const char *section, const char *key,
                      const char *value, char *err, size_t err_len)
{
	int rc = 0;

	if (strcmp(section, "node") == 0 && strcmp(key, "state_dir") == 0) {
		if (value[0] != '/') {
			snprintf(err, err_len,
			         "state_dir must be an absolute path: %s",
			         value);
			return -EINVAL;
		}
		rc = copy_str(cfg->state_dir, sizeof(cfg->state_dir), value);
	} else if (strcmp(section, "node") == 0 && strcmp(key, "listen") == 0) {
		if (fmd_config_check_addr(value) != 0)
			goto bad_addr;
		rc = copy_str(cfg->listen, sizeof(cfg->listen), value);
	} else if (strcmp(section, "node") == 0 &&
	           strcmp(key, "bootstrap") == 0) {
		if (fmd_config_check_addr(value) != 0)
			goto bad_addr;
		if (cfg->bootstrap_count >= FMD_BOOTSTRAP_MAX) {
			snprintf(err, err_len,
			         "too many bootstrap addresses (at most %d)",
			         FMD_BOOTSTRAP_MAX);
			return -E2BIG;
		}
		rc = copy_str(cfg->bootstrap[cfg->bootstrap_count],
		              sizeof(cfg->bootstrap[0]), value);
		if (rc == 0)
			cfg->bootstrap_count++;
	} else if (strcmp(section, "node") == 0 &&
	           strcmp(key, "advertise") == 0) {
		if (check_advertise(value) != 0) {
			snprintf(
			        err, err_len,
			        "[%s] %s: '%s' is not an address peers can "
			        "dial (numeric ADDR:PORT, not a wildcard, port "
			        "not 0)",
			        section, key, value);
			return -EINVAL;
		}
		if (cfg->advertise_count >= FMD_ADVERTISE_MAX) {
			snprintf(err, err_len,
			         "too many advertised addresses (at most %d)",
			         FMD_ADVERTISE_MAX);
			return -E2BIG;
		}
		rc = copy_str(cfg->advertise[cfg->advertise_count],
		              sizeof(cfg->advertise[0]), value);
		if (rc == 0)
			cfg->advertise_count++;
	} else if (strcmp(section, "api") == 0 && strcmp(key, "listen") == 0) {
		if (fmd_config_check_addr(value) != 0)
			goto bad_addr;
		rc = copy_str(cfg->api, sizeof(cfg->api), value);
	} else if (strcmp(section, "log") == 0 && strcmp(key, "format") == 0) {
		if (fmd_log_format_parse(value, &cfg->log_format) != 0) {
			snprintf(err, err_len,
			         "log format must be text or json, not '%s'",
			         value);
			return -EINVAL;
		}
	} else if (strcmp(section, "log") == 0 && strcmp(key, "level") == 0) {
		if (fmd_log_level_parse(value, &cfg->log_level) != 0) {
			snprintf(
			        err, err_len,
			        "log level must be error, warn, info or debug, "
			        "not '%s'",
			        value);
			return -EINVAL;
		}
	} else if (strcmp(section, "security") == 0 &&
	           strcmp(key, "allow_root") == 0) {
		if (parse_bool(value, &cfg->allow_root) != 0) {
			snprintf(err, err_len,
			         "allow_root must be true or false, not '%s'",
			         value);
			return -EINVAL;
		}
	} else if (strcmp(section, "discovery") == 0 &&
	           (strcmp(key, "mdns") == 0 || strcmp(key, "beacon") == 0)) {
		if (parse_bool(value, strcmp(key, "mdns") == 0
		                              ? &cfg->mdns
		                              : &cfg->beacon) != 0) {
			snprintf(err, err_len,
			         "[discovery] %s must be true or false, not "
			         "'%s'",
			         key, value);
			return -EINVAL;
		}
	} else if (strcmp(section, "discovery") == 0 &&
	           strcmp(key, "interfaces") == 0) {
		return add_iface_patterns(cfg->ifaces_include,
		                          &cfg->ifaces_include_count, value,
		                          key, err, err_len);
	} else if (strcmp(section, "discovery") == 0 &&
	           strcmp(key, "exclude") == 0) {
		return add_iface_patterns(cfg->ifaces_exclude,
		                          &cfg->ifaces_exclude_count, value,
		                          key, err, err_len);
	} else if (strcmp(section, "discovery") == 0 &&
	           strcmp(key, "hostname") == 0) {
		if (check_hostname(value) != 0) {
			snprintf(err, err_len,
			         "[discovery] hostname: '%s' is not a host "
			         "label (1 to %d letters, digits or '-', not "
			         "at either end, without .local)",
			         value, FM_HOSTNAME_MAX);
			return -EINVAL;
		}
		rc = copy_str(cfg->mdns_hostname, sizeof(cfg->mdns_hostname),
		              value);
	} else if (strcmp(section, "dht") == 0 && strcmp(key, "enabled") == 0) {
		if (parse_bool(value, &cfg->dht) != 0) {
			snprintf(err, err_len,
			         "[dht] enabled must be true or false, not "
			         "'%s'",
			         value);
			return -EINVAL;
		}
	} else if (strcmp(section, "dht") == 0 &&
	           strcmp(key, "subnet_max") == 0) {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' ||
		    value[0] == '-' || n > FMD_DHT_SUBNET_MAX_MAX) {
			snprintf(err, err_len,
			         "[dht] subnet_max must be a number from 0 "
			         "(the default, 2) to %d, not '%s'",
			         FMD_DHT_SUBNET_MAX_MAX, value);
			return -EINVAL;
		}
		cfg->dht_subnet_max = (unsigned)n;
	} else if (strcmp(section, "limits") == 0) {
		return set_limit(&cfg->limits, key, value, err, err_len);
	} else if (fmd_jobs_config_owns(section)) {
		return fmd_jobs_config_set(&cfg->jobs, section, key, value, err,
		                           err_len);
	} else {
		snprintf(err, err_len, "unknown option [%s] %s", section, key);
		return -EINVAL;
	}
	if (rc != 0)
		snprintf(err, err_len, "value too long for [%s] %s", section,
		         key);
	return rc;
bad_addr:
	snprintf(err, err_len,
	         "[%s] %s: '%s' is not a numeric ADDR:PORT (e.g. "
	         "0.0.0.0:7420 or [::]:7420)",
	         section, key, value);
	return -EINVAL;
}

struct ini_ctx {
	fmd_config *cfg;
	char msg[256];
	int failed; /* the first error's code, 0 while none */
};

static int on_ini_value(void *user, const char *section, const char *name,
                        const char *value)
{
	struct ini_ctx *ctx = user;

	int rc;

	if (ctx->failed != 0)
		return 0;
	/* --print-config writes the value back as "key = value", or
	 * "args = \"value\"" (quotes added unless there), and that line must
	 * fit too: "key=value" alone may be 4 characters shorter (found by
	 * fuzz/fuzz_config.c). */
	if (strlen(name) + sizeof(" = ") - 1 + strlen(value) +
	            (value[0] == '"' ? 0 : 2) >
	    FMD_CONFIG_LINE_MAX) {
		snprintf(ctx->msg, sizeof(ctx->msg),
		         "[%s] %s: value too long (the whole line \"%s = "
		         "value\" may have at most %d characters)",
		         section, name, name, FMD_CONFIG_LINE_MAX - 2);
		ctx->failed = -EINVAL;
		return 0;
	}
	rc = set_option(ctx->cfg, section, name, value, ctx->msg,
	                sizeof(ctx->msg));
	if (rc != 0) {
		ctx->failed = rc;
		return 0;
	}
	return 1;
}

static int check_lines(const char *text, char *err, size_t err_len,
                       const char *path)
{
	size_t line = 1;
	size_t col = 0;

	for (; *text != '\0'; text++) {
		if (*text == '\n') {
			line++;
			col = 0;
			continue;
		}
		if (++col > FMD_CONFIG_LINE_MAX) {
			snprintf(err, err_len,
			         "%s:%zu: line longer than %d characters", path,
			         line, FMD_CONFIG_LINE_MAX);
			return -EINVAL;
		}
	}
	return 0;
}

/* inih reads an indented line that follows a key as more of that key's
 * value (INI_ALLOW_MULTILINE), and keeps in it what would be a comment
 * anywhere else (" ;..."): a value that no file --print-config writes can
 * hold (found by fuzz/fuzz_config.c), and an indented "key = value" that
 * silently becomes part of the key above. Such lines are refused. The
 * rules are inih's: blank and comment lines are skipped, a section header
 * ends the key. */
static int check_continuations(const char *text, char *err, size_t err_len,
                               const char *path)
{
	size_t line = 1;
	int after_key = 0;

	while (*text != '\0') {
		size_t len = strcspn(text, "\n");
		const char *s = text;

		while (s < text + len && isspace((unsigned char)*s))
			s++;
		if (s == text + len || *s == ';' || *s == '#') {
			/* blank or comment: changes nothing */
		} else if (s > text && after_key) {
			snprintf(err, err_len,
			         "%s:%zu: indented line: a value cannot "
			         "continue "
			         "on the next line (remove the indentation)",
			         path, line);
			return -EINVAL;
		} else {
			after_key = *s != '[';
		}
		text += len;
		if (*text == '\n')
			text++;
		line++;
	}
	return 0;
}

int fmd_config_load_string(fmd_config *cfg, const char *text, const char *name,
                           char *err, size_t err_len)
{
	struct ini_ctx ctx;
	int line;
	int rc;

	rc = check_lines(text, err, err_len, name);
	if (rc == 0)
		rc = check_continuations(text, err, err_len, name);
	if (rc != 0)
		return rc;
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	line = ini_parse_string(text, on_ini_value, &ctx);
	if (line != 0) {
		snprintf(err, err_len, "%s:%d: %s", name, line,
		         ctx.failed != 0 ? ctx.msg : "syntax error");
		return ctx.failed != 0 ? ctx.failed : -EINVAL;
	}
	return 0;
}

int fmd_config_load_file(fmd_config *cfg, const char *path, char *err,
                         size_t err_len)
{
	char *text = NULL;
	size_t len = 0;
	int fd = -1;
	int rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot open config file %s: %s", path,
		         strerror(errno));
		goto cleanup;
	}
	text = malloc(FMD_CONFIG_FILE_MAX_BYTES + 1);
	if (text == NULL) {
		rc = -ENOMEM;
		snprintf(err, err_len, "out of memory");
		goto cleanup;
	}
	for (;;) {
		ssize_t n =
		        read(fd, text + len, FMD_CONFIG_FILE_MAX_BYTES - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, err_len, "cannot read %s: %s", path,
			         strerror(errno));
			goto cleanup;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == FMD_CONFIG_FILE_MAX_BYTES) {
			rc = -EFBIG;
			snprintf(err, err_len,
			         "config file %s is larger than %d bytes", path,
			         FMD_CONFIG_FILE_MAX_BYTES);
			goto cleanup;
		}
	}
	text[len] = '\0';
	if (memchr(text, '\0', len) != NULL) {
		rc = -EINVAL;
		snprintf(err, err_len, "%s: binary data in config file", path);
		goto cleanup;
	}
	rc = fmd_config_load_string(cfg, text, path, err, err_len);
	if (rc == 0)
		copy_str(cfg->config_file, sizeof(cfg->config_file), path);
cleanup:
	if (fd >= 0)
		close(fd);
	free(text);
	return rc;
}

static int default_config_path(const fmd_config_env *env, char *out,
                               size_t out_len)
{
	int n;

	if (env->xdg_config_home != NULL && env->xdg_config_home[0] == '/')
		n = snprintf(out, out_len, "%s/fedmesh/fedmesh.conf",
		             env->xdg_config_home);
	else if (env->home != NULL && env->home[0] != '\0')
		n = snprintf(out, out_len, "%s/.config/fedmesh/fedmesh.conf",
		             env->home);
	else
		return -ENOENT;
	return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

int fmd_config_resolve(fmd_config *cfg, int argc, char **argv,
                       const fmd_config_env *env, enum fmd_action *action,
                       char *err, size_t err_len)
{
	char path[FMD_PATH_MAX];
	const char *config_flag = NULL;
	int bootstrap_from_flags = 0;
	int advertise_from_flags = 0;
	int include_from_flags = 0;
	int exclude_from_flags = 0;
	int opt;
	int rc;

	*action = FMD_ACTION_RUN;
	fmd_config_defaults(cfg, env->xdg_state_home, env->home);

	/* Pass 1: only what decides which file to read, and --help. */
	opterr = 0;
	optind = 0;
	while ((opt = getopt_long(argc, argv, short_options, long_options,
	                          NULL)) != -1) {
		if (opt == 'c') {
			config_flag = optarg;
		} else if (opt == 'h') {
			*action = FMD_ACTION_HELP;
			return 0;
		} else if (opt == 'V') {
			*action = FMD_ACTION_VERSION;
			return 0;
		} else if (opt == '?' || opt == ':') {
			snprintf(err, err_len,
			         "unknown option or missing argument: %s "
			         "(see --help)",
			         argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, err_len, "unexpected argument: %s (see --help)",
		         argv[optind]);
		return -EINVAL;
	}

	if (config_flag != NULL) {
		rc = fmd_config_load_file(cfg, config_flag, err, err_len);
		if (rc != 0)
			return rc;
	} else if (default_config_path(env, path, sizeof(path)) == 0 &&
	           access(path, F_OK) == 0) {
		rc = fmd_config_load_file(cfg, path, err, err_len);
		if (rc != 0)
			return rc;
	}

	/* Pass 2: flags override the file. */
	optind = 0;
	while ((opt = getopt_long(argc, argv, short_options, long_options,
	                          NULL)) != -1) {
		const char *section = NULL;
		const char *key = NULL;
		switch (opt) {
		case 's':
			section = "node", key = "state_dir";
			break;
		case OPT_LISTEN:
			section = "node", key = "listen";
			break;
		case OPT_API:
			section = "api", key = "listen";
			break;
		case OPT_BOOTSTRAP:
			/* Flags replace the file's list rather than add to it.
			 */
			if (!bootstrap_from_flags) {
				cfg->bootstrap_count = 0;
				bootstrap_from_flags = 1;
			}
			section = "node", key = "bootstrap";
			break;
		case OPT_ADVERTISE:
			if (!advertise_from_flags) {
				cfg->advertise_count = 0;
				advertise_from_flags = 1;
			}
			section = "node", key = "advertise";
			break;
		case OPT_JOIN:
			/* The invite is checked when it is used; here only
			 * its size. */
			if (copy_str(cfg->join, sizeof(cfg->join), optarg) !=
			            0 ||
			    optarg[0] == '\0') {
				snprintf(err, err_len,
				         "--join: not an invite (empty or "
				         "longer than %d characters)",
				         FM_INVITE_TEXT_MAX);
				return -EINVAL;
			}
			break;
		case OPT_LOG_FORMAT:
			section = "log", key = "format";
			break;
		case OPT_LOG_LEVEL:
			section = "log", key = "level";
			break;
		case OPT_ALLOW_ROOT:
			cfg->allow_root = 1;
			break;
		case OPT_PRINT_CONFIG:
			*action = FMD_ACTION_PRINT_CONFIG;
			break;
		case OPT_NO_MDNS:
			cfg->mdns = 0;
			break;
		case OPT_NO_BEACON:
			cfg->beacon = 0;
			break;
		case OPT_MDNS_INTERFACE:
			if (!include_from_flags) {
				cfg->ifaces_include_count = 0;
				include_from_flags = 1;
			}
			section = "discovery", key = "interfaces";
			break;
		case OPT_MDNS_EXCLUDE:
			if (!exclude_from_flags) {
				cfg->ifaces_exclude_count = 0;
				exclude_from_flags = 1;
			}
			section = "discovery", key = "exclude";
			break;
		case OPT_MDNS_HOSTNAME:
			section = "discovery", key = "hostname";
			break;
		case OPT_NO_DHT:
			cfg->dht = 0;
			break;
		case OPT_DHT_SUBNET_MAX:
			section = "dht", key = "subnet_max";
			break;
		default:
			break;
		}
		if (section != NULL) {
			rc = set_option(cfg, section, key, optarg, err,
			                err_len);
			if (rc != 0)
				return rc;
		}
	}
	if (cfg->state_dir[0] == '\0') {
		snprintf(err, err_len,
		         "no state directory: set HOME, XDG_STATE_HOME or "
		         "--state-dir");
		return -EINVAL;
	}
	return fmd_jobs_config_check(&cfg->jobs, err, err_len);
}

void fmd_config_print(const fmd_config *cfg, FILE *out)
{
	size_t i;

	fprintf(out, "# effective fedmeshd configuration");
	if (cfg->config_file[0] != '\0')
		fprintf(out, " (file: %s)", cfg->config_file);
	fprintf(out, "\n[node]\nstate_dir = %s\nlisten = %s\n", cfg->state_dir,
	        cfg->listen);
	for (i = 0; i < cfg->bootstrap_count; i++)
		fprintf(out, "bootstrap = %s\n", cfg->bootstrap[i]);
	for (i = 0; i < cfg->advertise_count; i++)
		fprintf(out, "advertise = %s\n", cfg->advertise[i]);
	fprintf(out, "\n[api]\nlisten = %s\n", cfg->api);
	fprintf(out, "\n[log]\nformat = %s\nlevel = %s\n",
	        fmd_log_format_name(cfg->log_format),
	        fmd_log_level_name(cfg->log_level));
	fprintf(out, "\n[security]\nallow_root = %s\n",
	        cfg->allow_root ? "true" : "false");
	fprintf(out, "\n[discovery]\nmdns = %s\nbeacon = %s\n",
	        cfg->mdns ? "true" : "false", cfg->beacon ? "true" : "false");
	/* One name a line: a long list would not fit inih's line. */
	for (i = 0; i < cfg->ifaces_include_count; i++)
		fprintf(out, "interfaces = %s\n", cfg->ifaces_include[i]);
	for (i = 0; i < cfg->ifaces_exclude_count; i++)
		fprintf(out, "exclude = %s\n", cfg->ifaces_exclude[i]);
	if (cfg->mdns_hostname[0] != '\0')
		fprintf(out, "hostname = %s\n", cfg->mdns_hostname);
	fprintf(out, "\n[dht]\nenabled = %s\nsubnet_max = %u\n",
	        cfg->dht ? "true" : "false", cfg->dht_subnet_max);
	fprintf(out,
	        "\n[limits]\nconnections_max = %u\nhandshakes_max = %u\n"
	        "source_handshakes_per_s = %u\njobs_pending_max = %u\n"
	        "peer_queue_max = %" PRIu64 "\n",
	        cfg->limits.connections_max, cfg->limits.handshakes_max,
	        cfg->limits.source_handshakes_per_s,
	        cfg->limits.jobs_pending_max, cfg->limits.peer_queue_max_bytes);
	fmd_jobs_config_print(&cfg->jobs, out);
}

void fmd_config_usage(FILE *out, const char *argv0)
{
	fprintf(out,
	        "Usage: %s [OPTIONS]\n"
	        "\n"
	        "fedmeshd is the fedmesh node: it keeps this machine's "
	        "identity, talks to\n"
	        "peers of its federation and serves a local HTTP API for the "
	        "fedmesh CLI.\n"
	        "\n"
	        "Options (each also settable in the config file; flags win):\n"
	        "  -c, --config FILE      INI config file (default: "
	        "$XDG_CONFIG_HOME/fedmesh/fedmesh.conf,\n"
	        "                         read only if it exists)\n"
	        "  -s, --state-dir DIR    state directory (default: "
	        "$XDG_STATE_HOME/fedmesh,\n"
	        "                         else ~/.local/state/fedmesh)\n"
	        "      --listen ADDR:PORT peer port, UDP and TCP (default "
	        "%s; port 0 = any free port)\n"
	        "      --api ADDR:PORT    local HTTP API (default %s; port 0 "
	        "= any free port)\n"
	        "      --bootstrap ADDR:PORT\n"
	        "                         peer of this federation to "
	        "contact at start\n"
	        "                         (repeatable, up to %d)\n"
	        "      --join INVITE      join the federation of INVITE "
	        "(from 'fedmesh invite')\n"
	        "                         before starting (a flag only; "
	        "federation.key keeps\n"
	        "                         the membership afterwards)\n"
	        "      --advertise ADDR:PORT\n"
	        "                         address peers should dial, put in "
	        "this node's record\n"
	        "                         and invites (repeatable, up to %d; "
	        "default: the --listen\n"
	        "                         address, or the interfaces' "
	        "addresses when it is a\n"
	        "                         wildcard)\n"
	        "      --log-format FMT   text (default) or json (one object "
	        "per line)\n"
	        "      --log-level LEVEL  error, warn, info (default) or "
	        "debug\n"
	        "      --no-mdns          no mDNS / DNS-SD (224.0.0.251, "
	        "ff02::fb port 5353)\n"
	        "      --no-beacon        no encrypted broadcast beacon on "
	        "the peer port\n"
	        "      --mdns-interface NAME\n"
	        "                         discover peers only on interfaces "
	        "matching NAME (a\n"
	        "                         name or a wildcard, e.g. 'en*'; "
	        "repeatable, up to %d)\n"
	        "      --mdns-exclude NAME\n"
	        "                         never discover on interfaces "
	        "matching NAME (repeatable)\n"
	        "      --mdns-hostname LABEL\n"
	        "                         host name in mDNS records, without "
	        ".local (default:\n"
	        "                         this host's name and 8 hex digits "
	        "of the node ID)\n"
	        "      --no-dht           no Kademlia DHT (no discovery beyond "
	        "the LAN and the\n"
	        "                         bootstrap peers; 'fedmesh find' "
	        "fails)\n"
	        "      --dht-subnet-max N DHT routing table entries per "
	        "IPv4 /24 or IPv6 /48 in\n"
	        "                         one bucket (default 2; 0 to %d; "
	        "loopback and private\n"
	        "                         ranges are exempt)\n"
	        "      --allow-root       run even as root (not "
	        "recommended)\n"
	        "      --print-config     print the effective configuration "
	        "and exit\n"
	        "  -h, --help             show this help and exit\n"
	        "  -V, --version          show the version and exit\n"
	        "\n"
	        "Files in the state directory: identity.key (0600), "
	        "federation.key (0600),\n"
	        "fedmesh.db, api.addr, api.token (0600). See fedmeshd(1) and "
	        "fedmesh(1).\n"
	        "Jobs and exec services: the [jobs] and [service.NAME] "
	        "sections of the config\n"
	        "file (fedmeshd(1), JOBS).\n",
	        argv0, FMD_DEFAULT_LISTEN, FMD_DEFAULT_API, FMD_BOOTSTRAP_MAX,
	        FMD_ADVERTISE_MAX, FMD_IFACE_PATTERNS_MAX,
	        FMD_DHT_SUBNET_MAX_MAX);
}
