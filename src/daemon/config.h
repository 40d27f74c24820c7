/* fedmeshd configuration: embedded defaults, overridden by the INI file
 * (inih), overridden by command-line flags. Every option exists in all
 * three places; `fedmeshd --print-config` shows the result. */
#ifndef FMD_CONFIG_H
#define FMD_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#include "fedmesh/fedmesh.h"
#include "log.h"
#include "services.h"

#define FMD_DEFAULT_PEER_PORT 7420
#define FMD_DEFAULT_API_PORT 7421
#define FMD_DEFAULT_LISTEN "0.0.0.0:7420"
#define FMD_DEFAULT_API "127.0.0.1:7421"
#define FMD_BOOTSTRAP_MAX 16
/* Addresses a node puts in its signed record and its invites. */
#define FMD_ADVERTISE_MAX FM_RECORD_ADDRS_MAX
#define FMD_PATH_MAX 1024
/* Interface name patterns of [discovery] interfaces / exclude (fnmatch
 * wildcards), and the longest one: twice IFNAMSIZ leaves room for
 * bracket expressions. */
#define FMD_IFACE_PATTERNS_MAX 16
#define FMD_IFACE_PATTERN_MAX 32
/* Longest config file line we accept; inih's own buffer is the bound. */
#define FMD_CONFIG_FILE_MAX_BYTES (1024 * 1024)
/* Largest [dht] subnet_max: a bucket's size (k = 20), i.e. no cap. */
#define FMD_DHT_SUBNET_MAX_MAX 20

/* [limits]: what one source, or everyone together, may make the daemon
 * hold (docs/OPERATIONS.md, docs/SECURITY.md). The defaults, and the
 * largest values accepted. */
#define FMD_LIMIT_CONNECTIONS_DEFAULT 256 /* TCP streams, in and out */
#define FMD_LIMIT_CONNECTIONS_MAX 1024    /* = net.c's stream table */
#define FMD_LIMIT_HANDSHAKES_DEFAULT 32   /* = FM_HANDSHAKES_MAX */
#define FMD_LIMIT_HANDSHAKES_MAX 256      /* = FM_SESSIONS_MAX */
#define FMD_LIMIT_SOURCE_RATE_DEFAULT 10  /* connections/s per address */
#define FMD_LIMIT_SOURCE_RATE_MAX 100000
#define FMD_LIMIT_JOBS_PENDING_DEFAULT 65536 /* unfinished jobs submitted */
#define FMD_LIMIT_JOBS_PENDING_MAX (16 * 1024 * 1024)
#define FMD_LIMIT_PEER_QUEUE_DEFAULT_BYTES (8ULL * 1024 * 1024)
#define FMD_LIMIT_PEER_QUEUE_MIN_BYTES (64ULL * 1024) /* a frame or so */
#define FMD_LIMIT_PEER_QUEUE_MAX_BYTES (1024ULL * 1024 * 1024)

typedef struct fmd_limits_config {
	/* TCP connections open at once on the peer port, inbound and
	 * outbound; an inbound one beyond it is accepted and closed. */
	unsigned connections_max;
	/* Inbound connections not yet authenticated (the core's handshake
	 * cap); beyond it the oldest of them is closed. */
	unsigned handshakes_max;
	/* Inbound connections accepted per second from one IP address
	 * (IPv6: one /64), with a burst of twice that; beyond it they are
	 * closed before any byte is read. */
	unsigned source_handshakes_per_s;
	/* Jobs submitted here and not finished (queued, backlog, running);
	 * beyond it POST /v1/jobs answers 503. */
	unsigned jobs_pending_max;
	/* Bytes waiting to be written to one connection; a peer that does
	 * not read is disconnected beyond it. */
	uint64_t peer_queue_max_bytes;
} fmd_limits_config;

typedef struct fmd_config {
	char state_dir[FMD_PATH_MAX];
	char config_file[FMD_PATH_MAX]; /* file that was read; "" if none */
	char listen[FM_ADDR_STR_MAX];   /* peer port, UDP and TCP */
	char api[FM_ADDR_STR_MAX];      /* local HTTP API */
	char bootstrap[FMD_BOOTSTRAP_MAX][FM_ADDR_STR_MAX];
	size_t bootstrap_count;
	/* --advertise: what the node's record says instead of the addresses
	 * found from --listen and the interfaces. */
	char advertise[FMD_ADVERTISE_MAX][FM_ADDR_STR_MAX];
	size_t advertise_count;
	/* --join INVITE, a one-shot of this start: a flag only, never a
	 * config-file key and never printed, since it carries the federation
	 * key. "" when not given. */
	char join[FM_INVITE_TEXT_MAX + 1];
	enum fmd_log_format log_format;
	enum fm_log_level log_level;
	int allow_root;
	/* Local discovery ([discovery], docs/DISCOVERY.md). */
	int mdns;   /* mDNS / DNS-SD on 224.0.0.251 and ff02::fb port 5353 */
	int beacon; /* encrypted UDP broadcast beacon on the peer port */
	/* Interfaces discovery may use: when the include list is empty, every
	 * suitable interface but the default skip list (docker*, veth*, br-*,
	 * tun*, tap*, wg*, loopback); otherwise only those matching it. The
	 * exclude list applies in both cases. */
	char ifaces_include[FMD_IFACE_PATTERNS_MAX][FMD_IFACE_PATTERN_MAX + 1];
	size_t ifaces_include_count;
	char ifaces_exclude[FMD_IFACE_PATTERNS_MAX][FMD_IFACE_PATTERN_MAX + 1];
	size_t ifaces_exclude_count;
	/* The mDNS host name (one label, without ".local"); "" = the system
	 * host name with the node ID's first 8 hex digits appended. */
	char mdns_hostname[FM_HOSTNAME_MAX + 1];
	/* The Kademlia DHT ([dht], docs/DHT.md): on unless disabled;
	 * subnet_max: routing table entries per /24 or /48 per bucket, 0 =
	 * the core's default (FMD_DHT_SUBNET_MAX_MAX at most). */
	int dht;
	unsigned dht_subnet_max;
	/* Jobs: [jobs] and the exec services of [service.NAME] sections
	 * (services.h; file only, no flags). */
	fmd_jobs_config jobs;
	/* [limits] (file only). */
	fmd_limits_config limits;
} fmd_config;

/* What the command line asked for besides configuration. */
enum fmd_action {
	FMD_ACTION_RUN = 0,
	FMD_ACTION_HELP,
	FMD_ACTION_VERSION,
	FMD_ACTION_PRINT_CONFIG,
};

/* Fills cfg with embedded defaults. state_dir comes from xdg_state_home
 * (when non-empty) or home + "/.local/state", then "/fedmesh". Both may be
 * NULL; callers pass getenv() results, which keeps this testable. */
void fmd_config_defaults(fmd_config *cfg, const char *xdg_state_home,
                         const char *home);

/* Applies one INI file. A missing file is -ENOENT (the caller decides
 * whether that matters). Unknown keys, bad values and lines too long are
 * errors with file:line in err. */
int fmd_config_load_file(fmd_config *cfg, const char *path, char *err,
                         size_t err_len);
/* The same from a NUL-terminated string; name labels error messages. */
int fmd_config_load_string(fmd_config *cfg, const char *text, const char *name,
                           char *err, size_t err_len);

/* Full resolution: defaults < file < flags. The file is --config FILE if
 * given (must exist), else $XDG_CONFIG_HOME/fedmesh/fedmesh.conf or
 * ~/.config/fedmesh/fedmesh.conf if that exists. env values are passed in
 * (NULL allowed). Returns 0 and the action, or a negative errno with a
 * message in err (usage errors: -EINVAL). */
typedef struct fmd_config_env {
	const char *xdg_state_home;
	const char *xdg_config_home;
	const char *home;
} fmd_config_env;

int fmd_config_resolve(fmd_config *cfg, int argc, char **argv,
                       const fmd_config_env *env, enum fmd_action *action,
                       char *err, size_t err_len);

/* Writes the effective configuration as an INI file that
 * fmd_config_load_file() reads back to the same values. */
void fmd_config_print(const fmd_config *cfg, FILE *out);

void fmd_config_usage(FILE *out, const char *argv0);

/* Splits "HOST:PORT" / "[V6]:PORT" and checks it is numeric; port 0 is
 * allowed (any free port). Returns 0 or -EINVAL. */
int fmd_config_check_addr(const char *text);
/* 1 when addr is the unspecified address (0.0.0.0 or [::]). */
int fmd_addr_is_wildcard(const fm_addr *addr);

#endif
