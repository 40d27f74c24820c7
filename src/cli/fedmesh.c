/* fedmesh: the command-line client of fedmeshd's local HTTP API.
 *
 * The CLI holds no protocol logic and no privileges of its own: everything a
 * user asks of a running node goes through the same authenticated HTTP API
 * that scripts and dashboards use, so the CLI can never do more than the API
 * allows. It finds the daemon through two files fedmeshd writes into its
 * state directory: api.addr (where the API listens) and api.token (the
 * bearer token, mode 0600, so only the daemon's user can talk to it).
 *
 * Everything printed from an answer is sanitised first: peer addresses and
 * error strings come from other nodes, and must not be able to drive the
 * user's terminal with escape sequences. */

#ifdef HAVE_CONFIG_H
#include "config.h"
#else
#define PACKAGE_VERSION "0.1.0"
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <curl/curl.h>
#include <jansson.h>

#include "fedmesh/fedmesh.h"

/* Exit codes, documented in --help and fedmesh(1): scripts rely on them. */
enum fm_cli_exit {
	FM_CLI_EXIT_OK = 0,
	FM_CLI_EXIT_ERROR = 1,       /* the daemon answered with an error */
	FM_CLI_EXIT_USAGE = 2,       /* bad command line */
	FM_CLI_EXIT_UNREACHABLE = 3, /* no daemon to talk to */
	FM_CLI_EXIT_AUTH = 4,        /* token refused, or unusable */
};

#ifndef FM_STATE_SUBDIR
#define FM_STATE_SUBDIR "fedmesh"
#endif
/* Files fedmeshd writes into its state directory; these must match
 * FMD_ADDR_FILE and FMD_TOKEN_FILE in src/daemon/keyfile.h. */
#define FM_CLI_ADDR_FILE "api.addr"
#define FM_CLI_TOKEN_FILE "api.token"
/* 32 random bytes as hex: FMD_API_TOKEN_HEX_LEN in src/daemon/api.h. */
#define FM_CLI_TOKEN_HEX_LEN 64
/* api.addr and api.token are one short line each. Anything larger is not
 * what the daemon wrote, so it is refused rather than read. */
#define FM_CLI_SMALL_FILE_MAX_BYTES 256
#define FM_CLI_PATH_MAX 1024
#define FM_CLI_URL_MAX 512
/* Largest answer accepted. A peer list of tens of thousands of entries fits,
 * and a job with the largest output (16 MiB, in base64); a runaway or
 * hostile server cannot make us allocate without bound. */
#define FM_CLI_RESPONSE_MAX_BYTES (32 * 1024 * 1024)
#define FM_CLI_RESPONSE_INITIAL_BYTES 4096
#define FM_CLI_TIMEOUT_DEFAULT_S 5.0
#define FM_CLI_TIMEOUT_MAX_S 3600.0
/* Positional arguments after the command; no command takes more than 1. */
#define FM_CLI_ARGS_MAX 4
/* --address of 'fedmesh invite': as many as an invite carries. */
#define FM_CLI_ADDRESSES_MAX FM_INVITE_ADDRS_MAX
/* The query string of GET /v1/invite: every address percent-encoded. */
#define FM_CLI_QUERY_MAX (FM_CLI_ADDRESSES_MAX * (3 * FM_ADDR_STR_MAX + 16))
/* The body of POST /v1/join: {"invite": "..."} around one invite. */
#define FM_CLI_JOIN_BODY_MAX (FM_INVITE_TEXT_MAX + 64)
/* A command's name and arguments as the help lists them. */
#define FM_CLI_COMMAND_NAME_MAX 32
/* Node IDs are 64 hex characters; the table shows a prefix, as git and
 * docker do, which is unique enough to tell peers apart by eye. */
#define FM_CLI_NODE_SHORT_LEN 16
/* Widest table cell, in characters; wider values end in "...". */
#define FM_CLI_CELL_MAX_COLS 48
#define FM_CLI_ERROR_CELL_MAX_COLS 60
/* A character is at most 4 bytes of UTF-8, plus the NUL. */
#define FM_CLI_CELL_MAX_BYTES (4 * FM_CLI_ERROR_CELL_MAX_COLS + 1)
#define FM_CLI_FIELD_MAX_COLS 200
#define FM_CLI_FIELD_MAX_BYTES (4 * FM_CLI_FIELD_MAX_COLS + 1)
/* Longest user input echoed back in an error message. */
#define FM_CLI_ECHO_MAX_COLS 80
/* Digits that always round-trip a double (DBL_DECIMAL_DIG). */
#define FM_CLI_REAL_DIGITS_MAX 17

#define FM_CLI_START_HINT                                                  \
	"Is the daemon running? Start it with 'fedmeshd' (foreground) or " \
	"'systemctl --user start fedmeshd'."

struct cli;

typedef struct cli_command {
	const char *name;
	const char *args; /* usage after the name */
	const char *summary;
	const char *help;
	size_t max_args;
	int (*run)(struct cli *c);
} cli_command;

typedef struct cli {
	const cli_command *cmd;
	const char *args[FM_CLI_ARGS_MAX];
	size_t args_count;
	const char *addresses[FM_CLI_ADDRESSES_MAX]; /* invite --address */
	size_t addresses_count;
	int no_addresses; /* invite --no-addresses */
	/* Jobs: run --id, --idempotent, --verbose; jobs --state. */
	const char *job_id;
	const char *state;
	int idempotent;
	int verbose;
	int timeout_given;         /* run: --timeout is the job's timeout */
	const char *method;        /* DELETE; NULL: GET, or POST with a body */
	const char *state_dir_opt; /* --state-dir, NULL if not given */
	int json;
	int want_help;
	int want_version;
	double timeout_s;
	long timeout_ms;
	char state_dir[FM_CLI_PATH_MAX]; /* "" until found */
	char base_url[FM_CLI_URL_MAX]; /* "http://host:port", "" until known */
	char token[FM_CLI_TOKEN_HEX_LEN + 1];
	char token_note[FM_CLI_PATH_MAX + 128]; /* why no token was sent */
	int exit_code;                          /* set by cli_fail() */
} cli;

static int cmd_status(cli *c);
static int cmd_peers(cli *c);
static int cmd_id(cli *c);
static int cmd_invite(cli *c);
static int cmd_join(cli *c);
static int cmd_run(cli *c);
static int cmd_jobs(cli *c);
static int cmd_job(cli *c);
static int cmd_cancel(cli *c);
static int cmd_dht(cli *c);
static int cmd_find(cli *c);
static int cmd_help(cli *c);

static const cli_command commands[] = {
        {"status", "", "Show this node's ID, mode, peers and addresses",
         "Show this node's ID, version, mode, number of connected peers, "
         "uptime\n"
         "and the addresses it listens on (GET /v1/status).\n",
         0, cmd_status},
        {"peers", "", "List the peers this node knows",
         "List the peers this node knows (GET /v1/peers), one per line:\n"
         "  NODE        first 16 hex characters of the peer's node ID\n"
         "  ADDRESS     its first known address; (+N) when it has more\n"
         "  SOURCE      how it was found (bootstrap, invite, mdns, dht, "
         "...)\n"
         "  STATE       connected, connecting, backoff, banned or idle\n"
         "  RTT         round-trip time (moving average of keepalives)\n"
         "  SCORE       reputation score: 0 for a new peer, negative for\n"
         "              misbehaviour\n"
         "  LAST SEEN   when it was last heard from\n"
         "  LAST ERROR  the last error talking to it\n",
         0, cmd_peers},
        {"invite", " [--address HOST:PORT]... | --no-addresses",
         "Print an invite to this node's federation",
         "Print an invite to this node's federation (GET /v1/invite): one\n"
         "word starting with 'fedmesh1' that carries the federation key "
         "and the\n"
         "addresses where this node can be reached. Give it to the owner "
         "of\n"
         "another node, who runs 'fedmesh join INVITE'.\n"
         "\n"
         "The invite is a secret: whoever holds it can join the "
         "federation.\n"
         "\n"
         "  --address HOST:PORT  put this address in the invite instead "
         "of the\n"
         "                       ones the node advertises (repeatable, up "
         "to 8)\n"
         "  --no-addresses       an invite with the federation key only: "
         "the node\n"
         "                       that joins finds its peers by local "
         "discovery\n"
         "                       (mDNS or the beacon), so both must be on "
         "the\n"
         "                       same LAN\n"
         "\n"
         "With --json: {\"invite\": \"fedmesh1...\", \"addresses\": "
         "[...]}.\n",
         0, cmd_invite},
        {"join", " INVITE", "Join the federation of an invite",
         "Switch this node to the federation of INVITE (POST /v1/join): "
         "the\n"
         "node forgets the peers of its current federation, keeps the new "
         "key\n"
         "in its state directory, and connects to the addresses in the "
         "invite.\n"
         "Joining the federation the node is in already only adds the "
         "addresses.\n",
         1, cmd_join},
        {"run", " SERVICE",
         "Run a job: stdin is its input, its output goes to stdout",
         "Run a job of SERVICE (POST /v1/jobs) with standard input as its "
         "input,\n"
         "wait for it, write its output to standard output (byte for "
         "byte) and\n"
         "exit with its exit status. The job runs where it finishes "
         "soonest: on\n"
         "a peer that offers SERVICE, or on this node (always, when it is "
         "alone).\n"
         "Built-in services: echo, sha256, sleep (input: milliseconds); "
         "others\n"
         "are the exec services of the daemon's configuration.\n"
         "\n"
         "  --timeout SECONDS  the job's timeout, all attempts included\n"
         "                     (default: the daemon's [jobs] timeout)\n"
         "  --id ID            the job's ID, an idempotency key: running "
         "the same\n"
         "                     ID again returns the first job's result\n"
         "  --idempotent       the job may run twice (it may be hedged on "
         "a\n"
         "                     second node when the first is slow)\n"
         "  --verbose          say on stderr where it ran, and every "
         "attempt\n"
         "  --json             print the job object instead of its output\n"
         "\n"
         "Exit status: the job's own when it ran to its end; 1 when it "
         "failed,\n"
         "timed out or was cancelled (the reason on stderr); 2, 3, 4 as "
         "for\n"
         "every command.\n",
         1, cmd_run},
        {"jobs", " [--state STATE]", "List the jobs submitted on this node",
         "List the jobs submitted on this node, newest first (GET "
         "/v1/jobs,\n"
         "at most 100): ID, service, state, when it was created, the node "
         "it ran\n"
         "on, its exit status and error. --state shows one state only: "
         "queued,\n"
         "dispatched, running, done, failed, timed_out or cancelled.\n",
         0, cmd_jobs},
        {"job", " ID", "Show one job",
         "Show one job (GET /v1/jobs/ID) and its attempts; with --json the "
         "job\n"
         "object, its output included (base64, output_b64).\n",
         1, cmd_job},
        {"cancel", " ID", "Cancel a job",
         "Cancel a job that has not finished (DELETE /v1/jobs/ID): it is "
         "stopped\n"
         "wherever it runs and ends as cancelled.\n",
         1, cmd_cancel},
        {"dht", "", "Show the DHT routing table and lookup statistics",
         "Show this node's Kademlia DHT (GET /v1/dht): routing table "
         "entries\n"
         "(live: not stale), addresses kept for re-joining, records "
         "stored for\n"
         "others, the fill of each non-empty bucket (bucket i holds nodes "
         "whose\n"
         "ID shares exactly i leading bits with this node's; 20 at most), "
         "the\n"
         "lookups so far (how many succeeded, mean hops and messages), "
         "when the\n"
         "table was last re-bootstrapped, and datagram counters.\n",
         0, cmd_dht},
        {"find", " SERVICE", "List the nodes that offer SERVICE (DHT)",
         "Ask the DHT which nodes offer SERVICE (GET /v1/find/SERVICE) "
         "and list\n"
         "them: node ID (first 16 hex characters), the slots it offers "
         "and its\n"
         "addresses. The lookup takes at most 10 s (then HTTP 504); the "
         "CLI\n"
         "waits 15 s unless --timeout is given. With --json: an array of\n"
         "{\"node_id\", \"addresses\", \"slots\"}.\n",
         1, cmd_find},
        {"id", "", "Print this node's ID",
         "Print this node's ID (64 hex characters) and nothing else, for\n"
         "scripts. With --json: {\"node_id\": \"...\"}.\n",
         0, cmd_id},
        {"help", " [COMMAND]", "Show help for fedmesh or for COMMAND",
         "Show the help of fedmesh, or of COMMAND.\n", 1, cmd_help},
};

#define FM_CLI_COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

/* The general help: usage_head, the commands table, usage_tail. */
static const char usage_head[] =
        "Usage: fedmesh [OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Query fedmeshd, the fedmesh daemon, through its local HTTP API.\n"
        "\n";

static const char usage_tail[] =
        "\n"
        "Options (before or after the command):\n"
        "  --state-dir DIR    fedmeshd's state directory, where api.addr and\n"
        "                     api.token are (default: $FEDMESH_STATE_DIR,\n"
        "                     else $XDG_STATE_HOME/fedmesh,\n"
        "                     else ~/.local/state/fedmesh)\n"
        "  --api URL          the API's address, e.g. http://127.0.0.1:7421\n"
        "                     (default: read from STATE_DIR/api.addr)\n"
        "  --json             print the daemon's JSON answer instead of text\n"
        "  --timeout SECONDS  give up after SECONDS (default 5)\n"
        "  -h, --help         show this help, or a command's help\n"
        "  --version          show the version\n"
        "\n"
        "Environment:\n"
        "  FEDMESH_TOKEN      the API token (default: STATE_DIR/api.token)\n"
        "  FEDMESH_STATE_DIR  the state directory, as --state-dir\n"
        "\n"
        "Exit status:\n"
        "  0  success\n"
        "  1  the daemon answered with an error, or something failed\n"
        "  2  usage error\n"
        "  3  fedmeshd cannot be reached (not running, timed out)\n"
        "  4  the API token was refused (HTTP 401) or is malformed\n"
        "\n"
        "See fedmesh(1) and fedmeshd(1).\n";

/* ---- messages ------------------------------------------------------------ */

/* Prints "fedmesh: MESSAGE" on stderr, records the exit code the failure
 * maps to, and returns err so callers can `return cli_fail(...)`. */
static int cli_fail(cli *c, int exit_code, int err, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int cli_fail(cli *c, int exit_code, int err, const char *fmt, ...)
{
	va_list ap;

	fputs("fedmesh: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	c->exit_code = exit_code;
	return err;
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is not one (bad
 * lead byte, truncated, overlong, surrogate, beyond U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *s)
{
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	/* Stops at the NUL too: 0x00 is not a continuation byte. */
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	}
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return n;
}

/* 1 for the n-byte character at s when a terminal would obey rather than
 * show it: C0 controls and DEL, C1 controls (0xc2 0x80..0x9f, which
 * terminals take like ESC), and bidirectional overrides (U+202A..U+202E,
 * U+2066..U+2069), which show text in another order than it is. */
static int char_unsafe(const unsigned char *s, size_t n)
{
	if (n == 1)
		return s[0] < 0x20 || s[0] == 0x7f;
	if (n == 2)
		return s[0] == 0xc2 && s[1] < 0xa0;
	if (n == 3 && s[0] == 0xe2)
		return (s[1] == 0x80 && s[2] >= 0xaa && s[2] <= 0xae) ||
		       (s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9);
	return 0;
}

/* Appends src to the NUL-terminated dst (capacity cap), at most max_cols
 * characters, ending in "..." when cut. Invalid UTF-8 bytes and
 * characters that char_unsafe() refuses become '?'. */
static void text_append(char *dst, size_t cap, const char *src, size_t max_cols)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t len = strlen(dst);
	size_t total = 0, keep_cols, cols = 0, i, n;

	for (i = 0; s[i] != '\0'; i += n) {
		n = utf8_seq_len(s + i);
		if (n == 0)
			n = 1;
		total++;
	}
	keep_cols = total;
	if (total > max_cols)
		keep_cols = max_cols > 3 ? max_cols - 3 : 0;
	for (i = 0; s[i] != '\0' && cols < keep_cols; i += n) {
		n = utf8_seq_len(s + i);
		/* Room for this character, a possible "..." and the NUL. */
		if (len + (n ? n : 1) + 4 > cap)
			break;
		if (n == 0) {
			dst[len++] = '?';
			n = 1;
		} else if (char_unsafe(s + i, n)) {
			dst[len++] = '?';
		} else {
			memcpy(dst + len, s + i, n);
			len += n;
		}
		cols++;
	}
	if (s[i] != '\0' && len + 4 <= cap) {
		memcpy(dst + len, "...", 3);
		len += 3;
	}
	dst[len] = '\0';
}

/* Terminal columns of a string that text_append() produced (valid UTF-8),
 * so that tables stay aligned around wide characters such as CJK. */
static size_t text_cols(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t cols = 0, n, i;
	uint32_t cp;
	int w;

	for (; *s != '\0'; s += n) {
		n = utf8_seq_len(s);
		if (n <= 1) {
			cols++;
			n = 1;
			continue;
		}
		cp = s[0] & (0xff >> (n + 1));
		for (i = 1; i < n; i++)
			cp = cp << 6 | (s[i] & 0x3f);
		w = wcwidth((wchar_t)cp);
		cols += w >= 0 ? (size_t)w : 1;
	}
	return cols;
}

static int usage_error(cli *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static int usage_error(cli *c, const char *fmt, ...)
{
	va_list ap;

	fputs("fedmesh: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (c->cmd != NULL && c->cmd->run != cmd_help)
		fprintf(stderr, "\nTry 'fedmesh %s --help'.\n", c->cmd->name);
	else
		fputs("\nTry 'fedmesh --help'.\n", stderr);
	c->exit_code = FM_CLI_EXIT_USAGE;
	return -EINVAL;
}

/* ---- command line -------------------------------------------------------- */

static const cli_command *command_find(const char *name)
{
	size_t i;

	for (i = 0; i < FM_CLI_COMMAND_COUNT; i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static void usage_print(FILE *out)
{
	char name[FM_CLI_COMMAND_NAME_MAX];
	size_t i;

	fputs(usage_head, out);
	fputs("Commands:\n", out);
	for (i = 0; i < FM_CLI_COMMAND_COUNT; i++) {
		snprintf(name, sizeof(name), "%s%s", commands[i].name,
		         commands[i].args);
		/* A long synopsis gets a line of its own, as man pages do. */
		if (strlen(name) > 17)
			fprintf(out, "  %s\n  %-17s  %s\n", name, "",
			        commands[i].summary);
		else
			fprintf(out, "  %-17s  %s\n", name,
			        commands[i].summary);
	}
	fputs(usage_tail, out);
}

static int timeout_set(cli *c, const char *text)
{
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";
	char *end;
	double s;

	errno = 0;
	s = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(s > 0) ||
	    s > FM_CLI_TIMEOUT_MAX_S) {
		text_append(shown, sizeof(shown), text, FM_CLI_ECHO_MAX_COLS);
		return usage_error(
		        c,
		        "--timeout needs a number of seconds above 0 "
		        "and at most %g (got '%s').",
		        FM_CLI_TIMEOUT_MAX_S, shown);
	}
	c->timeout_s = s;
	c->timeout_ms = (long)(s * 1000.0 + 0.5);
	if (c->timeout_ms < 1)
		c->timeout_ms = 1;
	return 0;
}

/* Accepts http://HOST[:PORT][/] only. No path: the CLI appends /v1/...
 * itself. No user:password@: the token is the only credential, and a URL
 * that smuggles another one is more likely a mistake than intent. */
static int api_url_set(cli *c, const char *url)
{
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";
	const char *host, *rest;
	size_t host_len, i;
	int n;

	text_append(shown, sizeof(shown), url, FM_CLI_ECHO_MAX_COLS);
	if (strncasecmp(url, "https://", 8) == 0)
		return usage_error(
		        c,
		        "--api %s: https is not supported. fedmeshd "
		        "serves its API over plain HTTP on loopback, "
		        "e.g. http://127.0.0.1:7421.",
		        shown);
	if (strncasecmp(url, "http://", 7) != 0)
		return usage_error(c,
		                   "--api needs an http:// URL such as "
		                   "http://127.0.0.1:7421 (got '%s').",
		                   shown);
	host = url + 7;
	host_len = strcspn(host, "/?#");
	rest = host + host_len;
	if (host_len == 0)
		return usage_error(c, "--api %s has no host.", shown);
	if (strcmp(rest, "") != 0 && strcmp(rest, "/") != 0)
		return usage_error(
		        c,
		        "--api takes a scheme, a host and a port only, "
		        "without a path (got '%s').",
		        shown);
	if (memchr(host, '@', host_len) != NULL)
		return usage_error(
		        c,
		        "--api %s: no user:password@ please; the API "
		        "token is the only credential (FEDMESH_TOKEN).",
		        shown);
	for (i = 0; i < host_len; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (!(ch >= '0' && ch <= '9') && !(ch >= 'a' && ch <= 'z') &&
		    !(ch >= 'A' && ch <= 'Z') && strchr(".-_:[]", ch) == NULL)
			return usage_error(c,
			                   "--api %s: unexpected character in "
			                   "the host.",
			                   shown);
	}
	n = snprintf(c->base_url, sizeof(c->base_url), "http://%.*s",
	             (int)host_len, host);
	if (n < 0 || (size_t)n >= sizeof(c->base_url)) {
		c->base_url[0] = '\0';
		return usage_error(c, "--api URL is too long.");
	}
	return 0;
}

/* Matches "--name VALUE" and "--name=VALUE". Returns 1 with *value set when
 * argv[*i] is that option, 0 when it is not, -EINVAL when the value is
 * missing or empty. */
static int option_value(cli *c, const char *name, int argc, char **argv, int *i,
                        const char **value)
{
	const char *arg = argv[*i];
	size_t name_len = strlen(name);

	if (strncmp(arg, name, name_len) != 0)
		return 0;
	if (arg[name_len] == '=') {
		*value = arg + name_len + 1;
	} else if (arg[name_len] == '\0') {
		if (*i + 1 >= argc)
			return usage_error(c, "option '%s' needs a value.",
			                   name);
		*i += 1;
		*value = argv[*i];
	} else {
		return 0;
	}
	if ((*value)[0] == '\0')
		return usage_error(c, "option '%s' needs a non-empty value.",
		                   name);
	return 1;
}

static int args_parse(cli *c, int argc, char **argv)
{
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";
	const char *command_name = NULL;
	const char *value;
	int options_done = 0;
	int i, rc;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			if (command_name == NULL) {
				command_name = arg;
			} else if (c->args_count < FM_CLI_ARGS_MAX) {
				c->args[c->args_count++] = arg;
			} else {
				return usage_error(c, "too many arguments.");
			}
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = 1;
		} else if (strcmp(arg, "-h") == 0 ||
		           strcmp(arg, "--help") == 0) {
			c->want_help = 1;
		} else if (strcmp(arg, "--version") == 0) {
			c->want_version = 1;
		} else if (strcmp(arg, "--json") == 0) {
			c->json = 1;
		} else if (strcmp(arg, "--no-addresses") == 0) {
			c->no_addresses = 1;
		} else if (strcmp(arg, "--idempotent") == 0) {
			c->idempotent = 1;
		} else if (strcmp(arg, "--verbose") == 0 ||
		           strcmp(arg, "-v") == 0) {
			c->verbose = 1;
		} else if ((rc = option_value(c, "--id", argc, argv, &i,
		                              &value)) != 0) {
			if (rc < 0)
				return rc;
			c->job_id = value;
		} else if ((rc = option_value(c, "--state", argc, argv, &i,
		                              &value)) != 0) {
			if (rc < 0)
				return rc;
			c->state = value;
		} else if ((rc = option_value(c, "--state-dir", argc, argv, &i,
		                              &value)) != 0) {
			if (rc < 0)
				return rc;
			c->state_dir_opt = value;
		} else if ((rc = option_value(c, "--api", argc, argv, &i,
		                              &value)) != 0) {
			if (rc < 0)
				return rc;
			rc = api_url_set(c, value);
			if (rc < 0)
				return rc;
		} else if ((rc = option_value(c, "--timeout", argc, argv, &i,
		                              &value)) != 0) {
			if (rc < 0)
				return rc;
			rc = timeout_set(c, value);
			if (rc < 0)
				return rc;
			c->timeout_given = 1;
		} else if ((rc = option_value(c, "--address", argc, argv, &i,
		                              &value)) != 0) {
			if (rc < 0)
				return rc;
			if (c->addresses_count >= FM_CLI_ADDRESSES_MAX)
				return usage_error(
				        c, "at most %d --address options.",
				        FM_CLI_ADDRESSES_MAX);
			c->addresses[c->addresses_count++] = value;
		} else {
			text_append(shown, sizeof(shown), arg,
			            FM_CLI_ECHO_MAX_COLS);
			return usage_error(c, "unknown option '%s'.", shown);
		}
	}
	if (command_name != NULL) {
		c->cmd = command_find(command_name);
		if (c->cmd == NULL) {
			text_append(shown, sizeof(shown), command_name,
			            FM_CLI_ECHO_MAX_COLS);
			return usage_error(c, "unknown command '%s'.", shown);
		}
		if (c->args_count > c->cmd->max_args) {
			text_append(shown, sizeof(shown),
			            c->args[c->cmd->max_args],
			            FM_CLI_ECHO_MAX_COLS);
			return usage_error(c, "unexpected argument '%s'.",
			                   shown);
		}
		if (c->addresses_count > 0 && c->cmd->run != cmd_invite)
			return usage_error(c, "--address is an option of "
			                      "'fedmesh invite' only.");
		if (c->no_addresses && c->cmd->run != cmd_invite)
			return usage_error(c, "--no-addresses is an option of "
			                      "'fedmesh invite' only.");
		if (c->no_addresses && c->addresses_count > 0)
			return usage_error(c, "--no-addresses and --address "
			                      "cannot be combined.");
		if ((c->job_id != NULL || c->idempotent || c->verbose) &&
		    c->cmd->run != cmd_run)
			return usage_error(c,
			                   "--id, --idempotent and --verbose "
			                   "are options of 'fedmesh run' "
			                   "only.");
		if (c->state != NULL && c->cmd->run != cmd_jobs)
			return usage_error(c,
			                   "--state is an option of 'fedmesh "
			                   "jobs' only.");
	}
	return 0;
}

static void command_usage(const cli_command *cmd, FILE *out)
{
	fprintf(out, "Usage: fedmesh %s%s [OPTIONS]\n\n%s", cmd->name,
	        cmd->args, cmd->help);
	fputs("\nGlobal options (--state-dir, --api, --json, --timeout) and "
	      "exit codes:\nsee 'fedmesh --help'.\n",
	      out);
}

static int cmd_help(cli *c)
{
	const cli_command *cmd;
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";

	if (c->args_count == 0) {
		usage_print(stdout);
		return 0;
	}
	cmd = command_find(c->args[0]);
	if (cmd == NULL) {
		text_append(shown, sizeof(shown), c->args[0],
		            FM_CLI_ECHO_MAX_COLS);
		return usage_error(c, "unknown command '%s'.", shown);
	}
	command_usage(cmd, stdout);
	return 0;
}

/* ---- finding the daemon -------------------------------------------------- */

/* Reads a small regular file whole into buf (NUL-terminated). Refuses
 * anything larger than cap - 1 bytes (-EFBIG), anything but a regular file
 * (-EINVAL; a FIFO would block), and embedded NULs (-EINVAL). */
static int small_file_read(const char *path, char *buf, size_t cap)
{
	struct stat st;
	size_t len = 0;
	ssize_t got;
	char extra;
	int fd, rc;

	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto cleanup;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto cleanup;
	}
	while (len < cap - 1) {
		got = read(fd, buf + len, cap - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			goto cleanup;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	if (len == cap - 1) {
		do {
			got = read(fd, &extra, 1);
		} while (got < 0 && errno == EINTR);
		if (got != 0) {
			rc = got < 0 ? -errno : -EFBIG;
			goto cleanup;
		}
	}
	buf[len] = '\0';
	rc = strlen(buf) == len ? 0 : -EINVAL;
cleanup:
	if (rc < 0)
		buf[0] = '\0';
	close(fd);
	return rc;
}

static void trim_trailing_space(char *s)
{
	size_t len = strlen(s);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
	                   s[len - 1] == ' ' || s[len - 1] == '\t'))
		s[--len] = '\0';
}

/* Why small_file_read() failed, for a message. */
static const char *file_error_text(int rc)
{
	if (rc == -EINVAL)
		return "not a regular text file";
	if (rc == -EFBIG)
		return "too large for what fedmeshd writes there";
	return strerror(-rc);
}

/* Finds the state directory the way fedmeshd does (fmd_config_defaults),
 * so both agree with no configuration. Prints nothing: whether a missing
 * one matters is the caller's call. */
static int state_dir_find(cli *c)
{
	const char *env_dir = getenv("FEDMESH_STATE_DIR");
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;

	if (c->state_dir[0] != '\0')
		return 0;
	if (c->state_dir_opt != NULL)
		n = snprintf(c->state_dir, sizeof(c->state_dir), "%s",
		             c->state_dir_opt);
	else if (env_dir != NULL && env_dir[0] != '\0')
		n = snprintf(c->state_dir, sizeof(c->state_dir), "%s", env_dir);
	else if (xdg != NULL && xdg[0] != '\0')
		n = snprintf(c->state_dir, sizeof(c->state_dir),
		             "%s/" FM_STATE_SUBDIR, xdg);
	else if (home != NULL && home[0] != '\0')
		n = snprintf(c->state_dir, sizeof(c->state_dir),
		             "%s/.local/state/" FM_STATE_SUBDIR, home);
	else
		return -ENOENT;
	if (n < 0 || (size_t)n >= sizeof(c->state_dir)) {
		c->state_dir[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

static int state_path(cli *c, const char *file, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s", c->state_dir, file);

	if (n < 0 || (size_t)n >= cap)
		return cli_fail(c, FM_CLI_EXIT_USAGE, -ENAMETOOLONG,
		                "the state directory path is too long.");
	return 0;
}

static int token_valid(const char *token)
{
	size_t i;

	for (i = 0; token[i] != '\0'; i++) {
		if (strchr("0123456789abcdefABCDEF", token[i]) == NULL)
			return 0;
	}
	return i == FM_CLI_TOKEN_HEX_LEN;
}

/* FEDMESH_TOKEN, else STATE_DIR/api.token. Having none is not an error
 * here: the daemon will answer 401 and the message then says why none was
 * sent (token_note). */
static int token_load(cli *c)
{
	const char *env = getenv("FEDMESH_TOKEN");
	char path[FM_CLI_PATH_MAX];
	char buf[FM_CLI_SMALL_FILE_MAX_BYTES];
	int rc;

	if (env != NULL && env[0] != '\0') {
		if (!token_valid(env))
			return cli_fail(c, FM_CLI_EXIT_AUTH, -EINVAL,
			                "FEDMESH_TOKEN is not an API token "
			                "(expected %d hex characters).",
			                FM_CLI_TOKEN_HEX_LEN);
		memcpy(c->token, env, FM_CLI_TOKEN_HEX_LEN + 1);
		return 0;
	}
	rc = state_dir_find(c);
	if (rc < 0) {
		snprintf(c->token_note, sizeof(c->token_note),
		         "FEDMESH_TOKEN is not set and no state directory is "
		         "known");
		return 0;
	}
	rc = state_path(c, FM_CLI_TOKEN_FILE, path, sizeof(path));
	if (rc < 0)
		return rc;
	rc = small_file_read(path, buf, sizeof(buf));
	if (rc == -ENOENT || rc == -EACCES || rc == -EPERM) {
		snprintf(c->token_note, sizeof(c->token_note),
		         "FEDMESH_TOKEN is not set and %s cannot be read: %s",
		         path, strerror(-rc));
		rc = 0;
		goto cleanup;
	}
	if (rc < 0) {
		rc = cli_fail(c, FM_CLI_EXIT_AUTH, rc, "cannot read %s: %s",
		              path, file_error_text(rc));
		goto cleanup;
	}
	trim_trailing_space(buf);
	if (!token_valid(buf)) {
		rc = cli_fail(c, FM_CLI_EXIT_AUTH, -EINVAL,
		              "%s does not hold an API token (expected %d hex "
		              "characters).",
		              path, FM_CLI_TOKEN_HEX_LEN);
		goto cleanup;
	}
	memcpy(c->token, buf, FM_CLI_TOKEN_HEX_LEN + 1);
cleanup:
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

/* "127.0.0.1:7421", "[::1]:7421", "localhost:7421": a host of URL-safe
 * characters and a port from 1 to 65535. */
static int addr_check(const char *addr)
{
	const char *colon = strrchr(addr, ':');
	size_t len = strlen(addr), i;
	char *end;
	long port;

	if (len == 0 || len >= FM_ADDR_STR_MAX || colon == NULL ||
	    colon == addr)
		return -EINVAL;
	for (i = 0; addr + i < colon; i++) {
		unsigned char ch = (unsigned char)addr[i];

		if (!(ch >= '0' && ch <= '9') && !(ch >= 'a' && ch <= 'z') &&
		    !(ch >= 'A' && ch <= 'Z') && strchr(".-:[]", ch) == NULL)
			return -EINVAL;
	}
	if (addr[0] == '[' && colon[-1] != ']')
		return -EINVAL;
	if (colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
		return -EINVAL;
	return 0;
}

/* The daemon's address: from --api, else STATE_DIR/api.addr. */
static int base_url_resolve(cli *c)
{
	char path[FM_CLI_PATH_MAX];
	char buf[FM_CLI_SMALL_FILE_MAX_BYTES];
	const char *host = buf;
	const char *loopback = "";
	int rc, n;

	if (c->base_url[0] != '\0')
		return 0;
	rc = state_dir_find(c);
	if (rc == -ENOENT)
		return cli_fail(c, FM_CLI_EXIT_USAGE, rc,
		                "cannot tell where fedmeshd keeps its state: "
		                "neither HOME nor XDG_STATE_HOME is set.\n"
		                "Pass --state-dir DIR or --api URL.");
	if (rc < 0)
		return cli_fail(c, FM_CLI_EXIT_USAGE, rc,
		                "the state directory path is too long.");
	rc = state_path(c, FM_CLI_ADDR_FILE, path, sizeof(path));
	if (rc < 0)
		return rc;
	rc = small_file_read(path, buf, sizeof(buf));
	if (rc == -ENOENT)
		return cli_fail(c, FM_CLI_EXIT_UNREACHABLE, rc,
		                "cannot reach fedmeshd: %s does not exist.\n"
		                "%s\n"
		                "If it runs with another state directory, pass "
		                "--state-dir DIR or --api URL.",
		                path, FM_CLI_START_HINT);
	if (rc < 0)
		return cli_fail(c, FM_CLI_EXIT_ERROR, rc, "cannot read %s: %s",
		                path, file_error_text(rc));
	trim_trailing_space(buf);
	if (addr_check(buf) < 0)
		return cli_fail(
		        c, FM_CLI_EXIT_ERROR, -EINVAL,
		        "%s does not hold an address (expected HOST:PORT "
		        "such as 127.0.0.1:7421).",
		        path);
	/* A daemon told to serve the API on every address still answers on
	 * loopback, and its Host check accepts loopback names only. */
	if (strncmp(buf, "0.0.0.0:", 8) == 0) {
		loopback = "127.0.0.1";
		host = buf + 7;
	} else if (strncmp(buf, "[::]:", 5) == 0) {
		loopback = "[::1]";
		host = buf + 4;
	}
	n = snprintf(c->base_url, sizeof(c->base_url), "http://%s%s", loopback,
	             host);
	if (n < 0 || (size_t)n >= sizeof(c->base_url)) {
		c->base_url[0] = '\0';
		return cli_fail(c, FM_CLI_EXIT_ERROR, -ENAMETOOLONG,
		                "%s: address too long.", path);
	}
	return 0;
}

/* ---- HTTP ---------------------------------------------------------------- */

typedef struct http_body {
	char *data;
	size_t len;
	size_t cap;
	int too_big;
	int no_memory;
} http_body;

static size_t http_body_write(char *ptr, size_t size, size_t nmemb,
                              void *userdata)
{
	http_body *b = userdata;
	size_t n, want;
	char *grown;

	if (size != 0 && nmemb > SIZE_MAX / size) {
		b->too_big = 1;
		return 0;
	}
	n = size * nmemb;
	if (n > FM_CLI_RESPONSE_MAX_BYTES - b->len) {
		b->too_big = 1;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		want = b->cap != 0 ? b->cap : FM_CLI_RESPONSE_INITIAL_BYTES;
		while (want < b->len + n + 1)
			want *= 2;
		if (want > FM_CLI_RESPONSE_MAX_BYTES + 1)
			want = FM_CLI_RESPONSE_MAX_BYTES + 1;
		grown = realloc(b->data, want);
		if (grown == NULL) {
			b->no_memory = 1;
			return 0;
		}
		b->data = grown;
		b->cap = want;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* Turns a transfer failure into a message and an exit code. */
static int http_fail(cli *c, CURL *h, CURLcode res, const http_body *body,
                     const char *errbuf)
{
	const char *why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(res);
	long os_errno = 0;

	switch (res) {
	case CURLE_COULDNT_CONNECT:
		if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno) !=
		    CURLE_OK)
			os_errno = 0;
		if (os_errno == ECONNREFUSED)
			why = "connection refused";
		else if (os_errno != 0)
			why = strerror((int)os_errno);
		return cli_fail(c, FM_CLI_EXIT_UNREACHABLE, -ECONNREFUSED,
		                "cannot reach fedmeshd at %s (%s).\n%s",
		                c->base_url, why, FM_CLI_START_HINT);
	case CURLE_COULDNT_RESOLVE_HOST:
		return cli_fail(c, FM_CLI_EXIT_UNREACHABLE, -EHOSTUNREACH,
		                "cannot reach fedmeshd at %s (unknown host).",
		                c->base_url);
	case CURLE_OPERATION_TIMEDOUT:
		return cli_fail(c, FM_CLI_EXIT_UNREACHABLE, -ETIMEDOUT,
		                "fedmeshd at %s did not answer within %g s "
		                "(see --timeout).",
		                c->base_url, c->timeout_s);
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return cli_fail(c, FM_CLI_EXIT_UNREACHABLE, -ECONNRESET,
		                "lost the connection to fedmeshd at %s (%s).",
		                c->base_url, why);
	case CURLE_WRITE_ERROR:
		if (body->no_memory)
			return cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM,
			                "out of memory.");
		if (!body->too_big)
			break;
		/* fall through */
	case CURLE_FILESIZE_EXCEEDED:
		return cli_fail(c, FM_CLI_EXIT_ERROR, -EFBIG,
		                "the answer from %s is larger than %d MiB; "
		                "refusing it.",
		                c->base_url,
		                FM_CLI_RESPONSE_MAX_BYTES / (1024 * 1024));
	default:
		break;
	}
	return cli_fail(c, FM_CLI_EXIT_ERROR, -EIO,
	                "the request to fedmeshd at %s failed (%s).",
	                c->base_url, why);
}

/* The message of an error answer: {"error": "..."}, {"error": {"message":
 * "..."}} or {"message": "..."}. NULL when there is none. */
static const char *error_message(json_t *root)
{
	json_t *error, *message;

	if (!json_is_object(root))
		return NULL;
	error = json_object_get(root, "error");
	if (json_is_string(error))
		return json_string_value(error);
	message = json_object_get(error, "message");
	if (json_is_string(message))
		return json_string_value(message);
	message = json_object_get(root, "message");
	if (json_is_string(message))
		return json_string_value(message);
	return NULL;
}

/* Only what the API answers by default is enabled: plain http, no proxy
 * (a proxy from http_proxy would receive the token), no redirects (a
 * redirect could carry the Authorization header elsewhere), and no
 * Accept-Encoding, so no decompression bomb hides behind the size cap. */
static int http_setup(cli *c, CURL *h, const char *url,
                      struct curl_slist *headers, http_body *body, char *errbuf)
{
	int failed = 0;

	failed |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
	failed |=
	        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http") !=
	          CURLE_OK;
#else
	failed |= curl_easy_setopt(h, CURLOPT_PROTOCOLS,
	                           (long)CURLPROTO_HTTP) != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS,
	                           (long)CURLPROTO_HTTP) != CURLE_OK;
#endif
	failed |= curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms) !=
	          CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	                           c->timeout_ms) != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
	                           (curl_off_t)FM_CLI_RESPONSE_MAX_BYTES) !=
	          CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_USERAGENT,
	                           "fedmesh/" PACKAGE_VERSION) != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_body_write) !=
	          CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_WRITEDATA, body) != CURLE_OK;
	failed |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK;
	if (failed)
		return cli_fail(c, FM_CLI_EXIT_ERROR, -EINVAL,
		                "cannot set up the HTTP request (libcurl %s).",
		                curl_version());
	return 0;
}

/* GET path (body NULL) or POST body to path. On success *out holds the
 * parsed JSON answer (the caller frees it); on failure the message is
 * printed and c->exit_code says which kind of failure it was. */
static int api_request(cli *c, const char *path, const char *body_json,
                       json_t **out)
{
	const char *method = c->method != NULL
	                             ? c->method
	                             : (body_json != NULL ? "POST" : "GET");
	char url[FM_CLI_URL_MAX + 64];
	char auth[sizeof("Authorization: Bearer ") + FM_CLI_TOKEN_HEX_LEN];
	char errbuf[CURL_ERROR_SIZE] = "";
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";
	struct curl_slist *headers = NULL, *more;
	http_body body = {0};
	json_t *root = NULL;
	json_error_t jerr;
	const char *message;
	CURL *h = NULL;
	CURLcode res;
	long status = 0;
	int rc, n;

	*out = NULL;
	auth[0] = '\0';
	rc = base_url_resolve(c);
	if (rc < 0)
		goto cleanup;
	rc = token_load(c);
	if (rc < 0)
		goto cleanup;
	n = snprintf(url, sizeof(url), "%s%s", c->base_url, path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		rc = cli_fail(c, FM_CLI_EXIT_USAGE, -ENAMETOOLONG,
		              "the API URL is too long.");
		goto cleanup;
	}
	headers = curl_slist_append(NULL, "Accept: application/json");
	if (headers == NULL) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM, "out of memory.");
		goto cleanup;
	}
	if (body_json != NULL) {
		more = curl_slist_append(headers,
		                         "Content-Type: application/json");
		if (more == NULL) {
			rc = cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM,
			              "out of memory.");
			goto cleanup;
		}
		headers = more;
	}
	if (c->token[0] != '\0') {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
		         c->token);
		more = curl_slist_append(headers, auth);
		if (more == NULL) {
			rc = cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM,
			              "out of memory.");
			goto cleanup;
		}
		headers = more;
	}
	h = curl_easy_init();
	if (h == NULL) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM,
		              "cannot initialise libcurl.");
		goto cleanup;
	}
	rc = http_setup(c, h, url, headers, &body, errbuf);
	if (rc < 0)
		goto cleanup;
	if (c->method != NULL &&
	    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method) != CURLE_OK) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EINVAL,
		              "cannot set up the HTTP request (libcurl %s).",
		              curl_version());
		goto cleanup;
	}
	if (body_json != NULL &&
	    (curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE,
	                      (long)strlen(body_json)) != CURLE_OK ||
	     curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_json) != CURLE_OK)) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EINVAL,
		              "cannot set up the HTTP request (libcurl %s).",
		              curl_version());
		goto cleanup;
	}
	res = curl_easy_perform(h);
	if (res != CURLE_OK) {
		rc = http_fail(c, h, res, &body, errbuf);
		goto cleanup;
	}
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	if (body.len > 0)
		root = json_loadb(body.data, body.len, 0, &jerr);
	if (status == 401 && c->token[0] != '\0') {
		rc = cli_fail(c, FM_CLI_EXIT_AUTH, -EACCES,
		              "the daemon refused the API token (401). Check "
		              "FEDMESH_TOKEN or --state-dir.");
		goto cleanup;
	}
	if (status == 401) {
		rc = cli_fail(c, FM_CLI_EXIT_AUTH, -EACCES,
		              "the daemon refused the API token (401). Check "
		              "FEDMESH_TOKEN or --state-dir.\n"
		              "No token was sent: %s.",
		              c->token_note);
		goto cleanup;
	}
	if (status < 200 || status > 299) {
		message = error_message(root);
		if (message != NULL) {
			text_append(shown, sizeof(shown), message,
			            FM_CLI_FIELD_MAX_COLS);
			rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
			              "fedmeshd: %s (HTTP %ld)", shown, status);
		} else {
			rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
			              "fedmeshd answered %s %s with HTTP %ld.",
			              method, path, status);
		}
		goto cleanup;
	}
	if (root == NULL) {
		text_append(shown, sizeof(shown),
		            body.len > 0 ? jerr.text : "empty answer",
		            FM_CLI_FIELD_MAX_COLS);
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EBADMSG,
		              "fedmeshd's answer to %s %s is not JSON (%s).",
		              method, path, shown);
		goto cleanup;
	}
	*out = root;
	root = NULL;
	rc = 0;
cleanup:
	json_decref(root);
	if (h != NULL)
		curl_easy_cleanup(h);
	curl_slist_free_all(headers);
	free(body.data);
	explicit_bzero(auth, sizeof(auth));
	return rc;
}

static int api_get(cli *c, const char *path, json_t **out)
{
	return api_request(c, path, NULL, out);
}

/* ---- output -------------------------------------------------------------- */

/* Fewest significant digits that give v back. */
static int real_digits(double v)
{
	char buf[64];
	int digits;

	for (digits = 1; digits < FM_CLI_REAL_DIGITS_MAX; digits++) {
		snprintf(buf, sizeof(buf), "%.*g", digits, v);
		if (strtod(buf, NULL) == v)
			return digits;
	}
	return FM_CLI_REAL_DIGITS_MAX;
}

/* jansson prints every real with one precision, 17 digits by default, which
 * turns 12.3 into 12.300000000000001. The largest precision any real in the
 * document needs keeps each value exact and most of them short. Recursion
 * depth is bounded by jansson's parser depth limit. */
static int json_real_digits(json_t *v)
{
	int digits = 1, d;
	size_t i;
	void *it;

	if (json_is_real(v))
		return real_digits(json_real_value(v));
	if (json_is_array(v)) {
		for (i = 0; i < json_array_size(v); i++) {
			d = json_real_digits(json_array_get(v, i));
			if (d > digits)
				digits = d;
		}
	} else if (json_is_object(v)) {
		for (it = json_object_iter(v); it != NULL;
		     it = json_object_iter_next(v, it)) {
			d = json_real_digits(json_object_iter_value(it));
			if (d > digits)
				digits = d;
		}
	}
	return digits;
}

static int json_print(cli *c, json_t *v)
{
	size_t flags =
	        JSON_INDENT(2) | JSON_REAL_PRECISION(json_real_digits(v));

	if (json_dumpf(v, stdout, flags) != 0)
		return cli_fail(c, FM_CLI_EXIT_ERROR, -EIO,
		                "cannot write to standard output.");
	fputc('\n', stdout);
	return 0;
}

/* What a command that shows an answer expects of it. */
enum shown_kind { SHOWN_ANY, SHOWN_OBJECT, SHOWN_LIST };

/* GET PATH for a command that shows the answer. With --json the answer is
 * printed as it came and *done is set; otherwise it must be of `kind` and
 * *root is left for the caller to format (*done clear). Returns the
 * command's status when done: negative, or json_print()'s. */
static int api_get_shown(cli *c, const char *path, enum shown_kind kind,
                         json_t **root, int *done)
{
	int rc;

	*done = 1;
	rc = api_get(c, path, root);
	if (rc < 0)
		return rc;
	if (c->json)
		return json_print(c, *root);
	if ((kind == SHOWN_OBJECT && !json_is_object(*root)) ||
	    (kind == SHOWN_LIST && !json_is_array(*root)))
		return cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
		                "unexpected answer to GET %s (not a %s).", path,
		                kind == SHOWN_LIST ? "list" : "JSON object");
	*done = 0;
	return 0;
}

/* A JSON value as one line of text; "-" for null, missing or empty. */
static void value_text(json_t *v, char *out, size_t cap, size_t max_cols)
{
	out[0] = '\0';
	if (json_is_string(v))
		text_append(out, cap, json_string_value(v), max_cols);
	else if (json_is_integer(v))
		snprintf(out, cap, "%" JSON_INTEGER_FORMAT,
		         json_integer_value(v));
	else if (json_is_real(v))
		snprintf(out, cap, "%g", json_real_value(v));
	else if (json_is_true(v))
		snprintf(out, cap, "yes");
	else if (json_is_false(v))
		snprintf(out, cap, "no");
	if (out[0] == '\0')
		snprintf(out, cap, "-");
}

static void duration_text(uint64_t s, char *out, size_t cap)
{
	uint64_t days = s / 86400, hours = s / 3600 % 24, mins = s / 60 % 60;

	if (days > 0)
		snprintf(out, cap,
		         "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m %" PRIu64 "s",
		         days, hours, mins, s % 60);
	else if (hours > 0)
		snprintf(out, cap, "%" PRIu64 "h %" PRIu64 "m %" PRIu64 "s",
		         hours, mins, s % 60);
	else if (mins > 0)
		snprintf(out, cap, "%" PRIu64 "m %" PRIu64 "s", mins, s % 60);
	else
		snprintf(out, cap, "%" PRIu64 "s", s);
}

static int digits_read(const char *s, int count, int *out)
{
	int v = 0, i;

	for (i = 0; i < count; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). Every read stops
 * at the first unexpected byte, so a short string never reads past its
 * NUL. */
static int rfc3339_parse(const char *s, time_t *out)
{
	int year, mon, day, hour, min, sec, off_h = 0, off_m = 0, sign = 0;
	const char *p;
	struct tm tm;
	time_t t;

	if (digits_read(s, 4, &year) < 0 || s[4] != '-' ||
	    digits_read(s + 5, 2, &mon) < 0 || s[7] != '-' ||
	    digits_read(s + 8, 2, &day) < 0 ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    digits_read(s + 11, 2, &hour) < 0 || s[13] != ':' ||
	    digits_read(s + 14, 2, &min) < 0 || s[16] != ':' ||
	    digits_read(s + 17, 2, &sec) < 0)
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		if (digits_read(p + 1, 2, &off_h) < 0 || p[3] != ':' ||
		    digits_read(p + 4, 2, &off_m) < 0 || off_h > 23 ||
		    off_m > 59)
			return -EINVAL;
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 ||
	    hour > 23 || min > 59 || sec > 60)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t - (time_t)sign * (off_h * 3600 + off_m * 60);
	return 0;
}

/* "5s ago", "3m ago", "2h ago", "4d ago"; "never" for null. */
static void ago_text(json_t *v, time_t now, char *out, size_t cap)
{
	long long ago_s;
	time_t then;

	if (v == NULL || json_is_null(v)) {
		snprintf(out, cap, "never");
		return;
	}
	if (!json_is_string(v) ||
	    rfc3339_parse(json_string_value(v), &then) < 0) {
		value_text(v, out, cap, FM_CLI_CELL_MAX_COLS);
		return;
	}
	ago_s = (long long)difftime(now, then);
	if (ago_s < 1)
		snprintf(out, cap, "just now");
	else if (ago_s < 60)
		snprintf(out, cap, "%llds ago", ago_s);
	else if (ago_s < 3600)
		snprintf(out, cap, "%lldm ago", ago_s / 60);
	else if (ago_s < 86400)
		snprintf(out, cap, "%lldh ago", ago_s / 3600);
	else
		snprintf(out, cap, "%lldd ago", ago_s / 86400);
}

/* "Discovery: mDNS, beacon on eth0, wlan0" from the status' discovery
 * object; nothing for a daemon too old to send one. */
static void discovery_line(const json_t *disc)
{
	char line[FM_CLI_FIELD_MAX_BYTES] = "";
	char text[FM_CLI_FIELD_MAX_BYTES];
	const json_t *names;
	int mdns, beacon;
	size_t i;

	if (!json_is_object(disc))
		return;
	mdns = json_is_true(json_object_get(disc, "mdns"));
	beacon = json_is_true(json_object_get(disc, "beacon"));
	if (!mdns && !beacon) {
		printf("Discovery: off\n");
		return;
	}
	text_append(line, sizeof(line),
	            mdns && beacon ? "mDNS, beacon"
	                           : (mdns ? "mDNS" : "beacon"),
	            FM_CLI_FIELD_MAX_COLS);
	names = json_object_get(disc, "interfaces");
	text_append(line, sizeof(line),
	            json_array_size(names) > 0 ? " on " : " (no interface)",
	            FM_CLI_FIELD_MAX_COLS);
	for (i = 0; i < json_array_size(names); i++) {
		value_text(json_array_get(names, i), text, sizeof(text),
		           FM_CLI_CELL_MAX_COLS);
		if (i > 0)
			text_append(line, sizeof(line), ", ",
			            FM_CLI_FIELD_MAX_COLS);
		text_append(line, sizeof(line), text, FM_CLI_FIELD_MAX_COLS);
	}
	printf("Discovery: %s\n", line);
}

static int cmd_status(cli *c)
{
	char text[FM_CLI_FIELD_MAX_BYTES];
	char listening[FM_CLI_FIELD_MAX_BYTES];
	json_t *root = NULL, *v, *entry;
	size_t i;
	double uptime;
	int rc, done;

	rc = api_get_shown(c, "/v1/status", SHOWN_OBJECT, &root, &done);
	if (done)
		goto cleanup;
	value_text(json_object_get(root, "node_id"), text, sizeof(text),
	           FM_CLI_FIELD_MAX_COLS);
	printf("Node ID:   %s\n", text);
	value_text(json_object_get(root, "version"), text, sizeof(text),
	           FM_CLI_FIELD_MAX_COLS);
	printf("Version:   %s\n", text);
	value_text(json_object_get(root, "mode"), text, sizeof(text),
	           FM_CLI_FIELD_MAX_COLS);
	printf("Mode:      %s\n", text);
	v = json_object_get(root, "peers_connected");
	value_text(v, text, sizeof(text), FM_CLI_FIELD_MAX_COLS);
	printf("Peers:     %s%s\n", text,
	       json_is_number(v) ? " connected" : "");
	v = json_object_get(root, "uptime_s");
	uptime = json_number_value(v);
	if (json_is_number(v) && uptime >= 0 && uptime < 1e15)
		duration_text((uint64_t)uptime, text, sizeof(text));
	else
		snprintf(text, sizeof(text), "-");
	printf("Uptime:    %s\n", text);

	listening[0] = '\0';
	v = json_object_get(root, "listen");
	for (i = 0; i < json_array_size(v); i++) {
		entry = json_array_get(v, i);
		if (listening[0] != '\0')
			text_append(listening, sizeof(listening), ", ",
			            FM_CLI_FIELD_MAX_COLS);
		if (json_is_object(entry)) {
			value_text(json_object_get(entry, "proto"), text,
			           sizeof(text), FM_CLI_CELL_MAX_COLS);
			text_append(listening, sizeof(listening), text,
			            FM_CLI_FIELD_MAX_COLS);
			text_append(listening, sizeof(listening), " ",
			            FM_CLI_FIELD_MAX_COLS);
			value_text(json_object_get(entry, "addr"), text,
			           sizeof(text), FM_CLI_CELL_MAX_COLS);
		} else {
			value_text(entry, text, sizeof(text),
			           FM_CLI_CELL_MAX_COLS);
		}
		text_append(listening, sizeof(listening), text,
		            FM_CLI_FIELD_MAX_COLS);
	}
	printf("Listening: %s\n", listening[0] != '\0' ? listening : "-");
	value_text(json_object_get(root, "api"), text, sizeof(text),
	           FM_CLI_FIELD_MAX_COLS);
	printf("API:       %s\n", text);
	discovery_line(json_object_get(root, "discovery"));
	rc = 0;
cleanup:
	json_decref(root);
	return rc;
}

/* A row of a table as people read it: cells already cut to their width. */
#define FM_CLI_TABLE_COLS_MAX 8

typedef struct table_row {
	char cell[FM_CLI_TABLE_COLS_MAX][FM_CLI_CELL_MAX_BYTES];
} table_row;

typedef void (*table_row_format_fn)(json_t *item, time_t now, table_row *row);

static void table_row_print(const char *const *cells, const size_t *width,
                            size_t cols)
{
	size_t col, pad;

	for (col = 0; col < cols; col++) {
		fputs(cells[col], stdout);
		if (col + 1 == cols)
			break;
		/* Two spaces between columns, none after the last. */
		for (pad = text_cols(cells[col]); pad < width[col] + 2; pad++)
			fputc(' ', stdout);
	}
	fputc('\n', stdout);
}

/* Prints a JSON array as a table under `headers`, each column as wide as its
 * widest cell. Two passes, formatting each row twice, so memory stays
 * constant however many rows there are. */
static void table_print(json_t *list, const char *const *headers, size_t cols,
                        table_row_format_fn format)
{
	size_t width[FM_CLI_TABLE_COLS_MAX];
	const char *cells[FM_CLI_TABLE_COLS_MAX];
	time_t now = time(NULL);
	table_row row;
	size_t i, col, w;

	for (col = 0; col < cols; col++)
		width[col] = strlen(headers[col]);
	for (i = 0; i < json_array_size(list); i++) {
		format(json_array_get(list, i), now, &row);
		for (col = 0; col < cols; col++) {
			w = text_cols(row.cell[col]);
			if (w > width[col])
				width[col] = w;
		}
	}
	table_row_print(headers, width, cols);
	for (i = 0; i < json_array_size(list); i++) {
		format(json_array_get(list, i), now, &row);
		for (col = 0; col < cols; col++)
			cells[col] = row.cell[col];
		table_row_print(cells, width, cols);
	}
}

enum peer_col {
	PEER_COL_NODE,
	PEER_COL_ADDRESS,
	PEER_COL_SOURCE,
	PEER_COL_STATE,
	PEER_COL_RTT,
	PEER_COL_SCORE,
	PEER_COL_SEEN,
	PEER_COL_ERROR,
	PEER_COL_COUNT
};

_Static_assert(PEER_COL_COUNT <= FM_CLI_TABLE_COLS_MAX, "peer table columns");

static const char *const peer_headers[PEER_COL_COUNT] = {
        "NODE", "ADDRESS", "SOURCE",    "STATE",
        "RTT",  "SCORE",   "LAST SEEN", "LAST ERROR",
};

static void peer_row_format(json_t *peer, time_t now, table_row *row)
{
	char cell[FM_CLI_CELL_MAX_BYTES];
	json_t *addresses, *first, *v;
	size_t count;

	memset(row, 0, sizeof(*row));
	if (!json_is_object(peer))
		peer = NULL; /* every json_object_get() below gives NULL */

	/* A prefix, like git's short hashes: cut without "...". */
	v = json_object_get(peer, "node_id");
	if (json_is_string(v)) {
		snprintf(cell, sizeof(cell), "%.*s", FM_CLI_NODE_SHORT_LEN,
		         json_string_value(v));
		text_append(row->cell[PEER_COL_NODE],
		            sizeof(row->cell[PEER_COL_NODE]), cell,
		            FM_CLI_CELL_MAX_COLS);
	}
	if (row->cell[PEER_COL_NODE][0] == '\0') {
		value_text(v, row->cell[PEER_COL_NODE],
		           sizeof(row->cell[PEER_COL_NODE]),
		           FM_CLI_CELL_MAX_COLS);
	}

	addresses = json_object_get(peer, "addresses");
	count = json_array_size(addresses);
	first = json_array_get(addresses, 0);
	if (json_is_object(first))
		first = json_object_get(first, "addr");
	value_text(first, row->cell[PEER_COL_ADDRESS],
	           sizeof(row->cell[PEER_COL_ADDRESS]), FM_CLI_CELL_MAX_COLS);
	if (count > 1) {
		snprintf(cell, sizeof(cell), " (+%zu)", count - 1);
		text_append(row->cell[PEER_COL_ADDRESS],
		            sizeof(row->cell[PEER_COL_ADDRESS]), cell,
		            FM_CLI_CELL_MAX_COLS);
	}

	value_text(json_object_get(peer, "source"), row->cell[PEER_COL_SOURCE],
	           sizeof(row->cell[PEER_COL_SOURCE]), FM_CLI_CELL_MAX_COLS);
	value_text(json_object_get(peer, "state"), row->cell[PEER_COL_STATE],
	           sizeof(row->cell[PEER_COL_STATE]), FM_CLI_CELL_MAX_COLS);

	/* Loopback and LAN peers answer in well under a millisecond: keep
	 * two significant digits there rather than print 0.0ms. */
	v = json_object_get(peer, "rtt_ms");
	if (json_is_number(v) && json_number_value(v) >= 1e5)
		snprintf(row->cell[PEER_COL_RTT],
		         sizeof(row->cell[PEER_COL_RTT]), "%.4gms",
		         json_number_value(v));
	else if (json_is_number(v) && json_number_value(v) < 1.0)
		snprintf(row->cell[PEER_COL_RTT],
		         sizeof(row->cell[PEER_COL_RTT]), "%.2fms",
		         json_number_value(v));
	else if (json_is_number(v))
		snprintf(row->cell[PEER_COL_RTT],
		         sizeof(row->cell[PEER_COL_RTT]), "%.1fms",
		         json_number_value(v));
	else
		value_text(v, row->cell[PEER_COL_RTT],
		           sizeof(row->cell[PEER_COL_RTT]),
		           FM_CLI_CELL_MAX_COLS);

	v = json_object_get(peer, "score");
	if (json_is_real(v))
		snprintf(row->cell[PEER_COL_SCORE],
		         sizeof(row->cell[PEER_COL_SCORE]), "%.4g",
		         json_real_value(v));
	else
		value_text(v, row->cell[PEER_COL_SCORE],
		           sizeof(row->cell[PEER_COL_SCORE]),
		           FM_CLI_CELL_MAX_COLS);

	ago_text(json_object_get(peer, "last_seen"), now,
	         row->cell[PEER_COL_SEEN], sizeof(row->cell[PEER_COL_SEEN]));
	value_text(json_object_get(peer, "last_error"),
	           row->cell[PEER_COL_ERROR], sizeof(row->cell[PEER_COL_ERROR]),
	           FM_CLI_ERROR_CELL_MAX_COLS);
}

static int cmd_peers(cli *c)
{
	json_t *root = NULL, *list;
	int rc, done;

	rc = api_get_shown(c, "/v1/peers", SHOWN_ANY, &root, &done);
	if (done)
		goto cleanup;
	/* A bare array, or tolerate {"peers": [...]}. */
	list = json_is_object(root) ? json_object_get(root, "peers") : root;
	if (!json_is_array(list)) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
		              "unexpected answer to GET /v1/peers (not a list "
		              "of peers).");
		goto cleanup;
	}
	if (json_array_size(list) == 0) {
		puts("No peers yet.");
		rc = 0;
		goto cleanup;
	}
	table_print(list, peer_headers, PEER_COL_COUNT, peer_row_format);
	rc = 0;
cleanup:
	json_decref(root);
	return rc;
}

static int cmd_id(cli *c)
{
	char text[FM_CLI_FIELD_MAX_BYTES] = "";
	json_t *root = NULL, *node_id, *out = NULL;
	int rc;

	rc = api_get(c, "/v1/status", &root);
	if (rc < 0)
		goto cleanup;
	node_id = json_object_get(root, "node_id");
	if (!json_is_string(node_id) || json_string_length(node_id) == 0) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
		              "the answer to GET /v1/status has no node_id.");
		goto cleanup;
	}
	if (c->json) {
		out = json_pack("{s:O}", "node_id", node_id);
		if (out == NULL) {
			rc = cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM,
			              "out of memory.");
			goto cleanup;
		}
		rc = json_print(c, out);
		goto cleanup;
	}
	text_append(text, sizeof(text), json_string_value(node_id),
	            FM_CLI_FIELD_MAX_COLS);
	printf("%s\n", text);
	rc = 0;
cleanup:
	json_decref(out);
	json_decref(root);
	return rc;
}

/* Percent-encodes what is not unreserved in a query value (RFC 3986),
 * e.g. the brackets of "[::1]:7420". */
static int query_append(char *out, size_t cap, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(out);
	const unsigned char *p;

	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		int plain = (*p >= '0' && *p <= '9') ||
		            (*p >= 'a' && *p <= 'z') ||
		            (*p >= 'A' && *p <= 'Z') || strchr("-._~", *p);

		if (len + (plain ? 1 : 3) >= cap)
			return -ENAMETOOLONG;
		if (plain) {
			out[len++] = (char)*p;
		} else {
			out[len++] = '%';
			out[len++] = hex[*p >> 4];
			out[len++] = hex[*p & 0x0f];
		}
	}
	out[len] = '\0';
	return 0;
}

static int cmd_invite(cli *c)
{
	char path[FM_CLI_QUERY_MAX] = "/v1/invite";
	char shown[FM_CLI_FIELD_MAX_BYTES];
	json_t *root = NULL, *invite;
	size_t i;
	int rc;

	for (i = 0; i < c->addresses_count; i++) {
		if (addr_check(c->addresses[i]) < 0) {
			shown[0] = '\0';
			text_append(shown, sizeof(shown), c->addresses[i],
			            FM_CLI_ECHO_MAX_COLS);
			return usage_error(c,
			                   "--address '%s' is not HOST:PORT "
			                   "(e.g. 192.0.2.10:7420 or "
			                   "[2001:db8::1]:7420).",
			                   shown);
		}
		rc = -ENAMETOOLONG;
		if (strlen(path) + sizeof("&address=") < sizeof(path)) {
			strcat(path, i == 0 ? "?address=" : "&address=");
			rc = query_append(path, sizeof(path), c->addresses[i]);
		}
		if (rc < 0)
			return usage_error(c, "too many or too long --address "
			                      "values.");
	}
	if (c->no_addresses)
		strcat(path, "?addresses=none");
	rc = api_get(c, path, &root);
	if (rc < 0)
		goto cleanup;
	if (c->json) {
		rc = json_print(c, root);
		goto cleanup;
	}
	invite = json_object_get(root, "invite");
	if (!json_is_string(invite) ||
	    strncmp(json_string_value(invite), "fedmesh1", 8) != 0) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
		              "the answer to GET /v1/invite has no invite.");
		goto cleanup;
	}
	shown[0] = '\0';
	text_append(shown, sizeof(shown), json_string_value(invite),
	            FM_CLI_FIELD_MAX_COLS);
	printf("%s\n", shown);
	rc = 0;
cleanup:
	json_decref(root);
	return rc;
}

static int cmd_join(cli *c)
{
	json_t *root = NULL, *request = NULL, *boot;
	char *body = NULL;
	size_t count;
	int rc;

	if (c->args_count != 1 || c->args[0][0] == '\0')
		return usage_error(c, "join needs the INVITE that 'fedmesh "
		                      "invite' printed on another node.");
	if (strlen(c->args[0]) > FM_INVITE_TEXT_MAX)
		return cli_fail(c, FM_CLI_EXIT_ERROR, -EINVAL,
		                "that is not a fedmesh invite (longer than %d "
		                "characters).",
		                FM_INVITE_TEXT_MAX);
	request = json_pack("{s:s}", "invite", c->args[0]);
	if (request != NULL)
		body = json_dumps(request, JSON_COMPACT);
	if (body == NULL) {
		/* json_pack refuses invalid UTF-8: no invite has any. */
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EINVAL,
		              "that is not a fedmesh invite.");
		goto cleanup;
	}
	rc = api_request(c, "/v1/join", body, &root);
	if (rc < 0)
		goto cleanup;
	if (c->json) {
		rc = json_print(c, root);
		goto cleanup;
	}
	boot = json_object_get(root, "bootstrap");
	count = json_array_size(boot);
	if (count == 0)
		printf("Joined the federation; the invite has no address: "
		       "peers on this LAN are found by local discovery.\n");
	else
		printf("Joined the federation; connecting to %zu bootstrap "
		       "address(es).\n",
		       count);
	rc = 0;
cleanup:
	if (body != NULL) {
		explicit_bzero(body, strlen(body));
		free(body);
	}
	json_decref(request);
	json_decref(root);
	return rc;
}

/* ---- jobs ---------------------------------------------------------------- */

/* What 'fedmesh run' reads from stdin at most: the protocol's ceiling (the
 * daemon may take less, [jobs] input_max, and answers 413 beyond). */
#define FM_CLI_JOB_INPUT_MAX FM_JOB_INPUT_MAX
/* Longest ?wait= the API takes, and what an HTTP request may take beyond
 * its wait before the CLI gives up on it. */
#define FM_CLI_WAIT_MAX_S 300
#define FM_CLI_WAIT_MARGIN_MS 10000
/* Rows of 'fedmesh jobs' (the API's default page). */
#define FM_CLI_JOBS_LIST_LIMIT 100
/* "/v1/jobs/ID?wait=300" and "/v1/jobs?state=...&limit=..." */
#define FM_CLI_JOB_PATH_MAX (FM_JOB_ID_MAX + 64)
#define FM_CLI_STDIN_CHUNK_BYTES 65536

static const char cli_b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding; NULL when out of memory. */
static char *b64_encode(const uint8_t *in, size_t len)
{
	size_t out_len = 4 * ((len + 2) / 3);
	char *out = malloc(out_len + 1);
	size_t i, o = 0;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		             in[i + 2];

		out[o++] = cli_b64[v >> 18];
		out[o++] = cli_b64[(v >> 12) & 63];
		out[o++] = cli_b64[(v >> 6) & 63];
		out[o++] = cli_b64[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = cli_b64[v >> 18];
		out[o++] = cli_b64[(v >> 12) & 63];
		out[o++] = i + 1 < len ? cli_b64[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

static int b64_value(char ch)
{
	const char *p = ch != '\0' ? strchr(cli_b64, ch) : NULL;

	return p != NULL ? (int)(p - cli_b64) : -1;
}

/* Decodes standard base64 (padding optional); -EINVAL for anything else. */
static int b64_decode(const char *in, size_t len, uint8_t **out,
                      size_t *out_len)
{
	uint8_t *buf;
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0;

	while (len > 0 && in[len - 1] == '=')
		len--;
	buf = malloc(len / 4 * 3 + 3);
	if (buf == NULL)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		int v = b64_value(in[i]);

		if (v < 0) {
			free(buf);
			return -EINVAL;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (uint8_t)(acc >> bits);
		}
	}
	*out = buf;
	*out_len = o;
	return 0;
}

/* All of stdin, at most FM_CLI_JOB_INPUT_MAX bytes. */
static int stdin_read_all(cli *c, uint8_t **out, size_t *len)
{
	uint8_t *buf = NULL, *grown;
	size_t cap = 0, n = 0, got;

	*out = NULL;
	*len = 0;
	for (;;) {
		if (cap - n < FM_CLI_STDIN_CHUNK_BYTES) {
			cap = cap != 0 ? 2 * cap : FM_CLI_STDIN_CHUNK_BYTES;
			if (cap >
			    FM_CLI_JOB_INPUT_MAX + FM_CLI_STDIN_CHUNK_BYTES)
				cap = FM_CLI_JOB_INPUT_MAX +
				      FM_CLI_STDIN_CHUNK_BYTES;
			grown = realloc(buf, cap);
			if (grown == NULL) {
				free(buf);
				return cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM,
				                "out of memory.");
			}
			buf = grown;
		}
		got = fread(buf + n, 1, cap - n, stdin);
		n += got;
		if (n > FM_CLI_JOB_INPUT_MAX) {
			free(buf);
			return cli_fail(c, FM_CLI_EXIT_ERROR, -EFBIG,
			                "the input is larger than %u MiB, the "
			                "most a job takes.",
			                FM_CLI_JOB_INPUT_MAX / (1024 * 1024));
		}
		if (got == 0)
			break;
	}
	if (ferror(stdin)) {
		free(buf);
		return cli_fail(c, FM_CLI_EXIT_ERROR, -EIO,
		                "cannot read standard input.");
	}
	*out = buf;
	*len = n;
	return 0;
}

/* A job ID as the API takes it: [A-Za-z0-9._-], 1 to FM_JOB_ID_MAX
 * characters, not starting with '.' (it names a directory). */
static int job_id_valid(const char *id)
{
	size_t len = strlen(id), i;

	if (len == 0 || len > FM_JOB_ID_MAX || id[0] == '.')
		return 0;
	for (i = 0; i < len; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') ||
		      (id[i] >= 'A' && id[i] <= 'Z') ||
		      (id[i] >= '0' && id[i] <= '9') || id[i] == '.' ||
		      id[i] == '_' || id[i] == '-'))
			return 0;
	return 1;
}

/* The exit of 'fedmesh run': the job's exit status when it ran to its
 * end; 1, with the reason on stderr, when it did not. */
static int job_exit(cli *c, json_t *job)
{
	char id[FM_CLI_FIELD_MAX_BYTES] = "", state[FM_CLI_CELL_MAX_BYTES];
	char error[FM_CLI_FIELD_MAX_BYTES] = "";
	json_t *status = json_object_get(job, "exit_status");
	json_t *why = json_object_get(job, "error");
	json_int_t code;

	value_text(json_object_get(job, "id"), id, sizeof(id),
	           FM_CLI_FIELD_MAX_COLS);
	value_text(json_object_get(job, "state"), state, sizeof(state),
	           FM_CLI_CELL_MAX_COLS);
	if (json_is_string(why))
		text_append(error, sizeof(error), json_string_value(why),
		            FM_CLI_FIELD_MAX_COLS);
	if (json_is_integer(status)) {
		code = json_integer_value(status);
		if (code == 0)
			return 0;
		if (error[0] != '\0')
			fprintf(stderr, "fedmesh: job %s: %s\n", id, error);
		c->exit_code =
		        code > 0 && code < 256 ? (int)code : FM_CLI_EXIT_ERROR;
		return -ECHILD;
	}
	if (strcmp(state, "done") == 0)
		return 0;
	return cli_fail(c, FM_CLI_EXIT_ERROR, -ECHILD, "job %s %s: %s", id,
	                state, error[0] != '\0' ? error : "no reason given");
}

static int job_state_final(json_t *job)
{
	const char *s = json_string_value(json_object_get(job, "state"));

	return s != NULL &&
	       (strcmp(s, "done") == 0 || strcmp(s, "failed") == 0 ||
	        strcmp(s, "timed_out") == 0 || strcmp(s, "cancelled") == 0);
}

/* One API request of the jobs commands: method (NULL: GET, or POST with a
 * body) and an HTTP timeout that covers wait_s of long-poll. */
static int job_request(cli *c, const char *method, const char *path,
                       const char *body, long wait_s, json_t **out)
{
	long saved = c->timeout_ms;
	int rc;

	c->method = method;
	if (wait_s > 0)
		c->timeout_ms = wait_s * 1000 + FM_CLI_WAIT_MARGIN_MS;
	rc = api_request(c, path, body, out);
	c->method = NULL;
	c->timeout_ms = saved;
	return rc;
}

/* Every attempt of a job, one a line. Everything printed comes from the
 * network: sanitised. */
static void attempts_print(FILE *out, json_t *job, const char *self)
{
	char node[FM_CLI_CELL_MAX_BYTES], state[FM_CLI_CELL_MAX_BYTES];
	char text[FM_CLI_FIELD_MAX_BYTES];
	json_t *attempts = json_object_get(job, "attempts");
	size_t i;

	for (i = 0; i < json_array_size(attempts); i++) {
		json_t *a = json_array_get(attempts, i);
		const char *nid =
		        json_string_value(json_object_get(a, "node_id"));
		char start[FM_CLI_CELL_MAX_BYTES];

		node[0] = '\0';
		text_append(node, sizeof(node), nid != NULL ? nid : "?",
		            FM_CLI_NODE_SHORT_LEN);
		value_text(json_object_get(a, "outcome"), state, sizeof(state),
		           FM_CLI_CELL_MAX_COLS);
		value_text(json_object_get(a, "start"), start, sizeof(start),
		           FM_CLI_CELL_MAX_COLS);
		text[0] = '\0';
		if (json_is_string(json_object_get(a, "error")))
			text_append(
			        text, sizeof(text),
			        json_string_value(json_object_get(a, "error")),
			        FM_CLI_ERROR_CELL_MAX_COLS);
		fprintf(out, "  attempt %zu: %s%s at %s: %s%s%s\n", i + 1, node,
		        self != NULL && nid != NULL && strcmp(self, nid) == 0
		                ? " (this node)"
		                : "",
		        start, state, text[0] != '\0' ? ": " : "", text);
	}
}

/* What 'fedmesh run --verbose' says on stderr: where the job ran and
 * every attempt. */
static void job_report(cli *c, json_t *job)
{
	char id[FM_CLI_FIELD_MAX_BYTES] = "", state[FM_CLI_CELL_MAX_BYTES];
	char node[FM_CLI_CELL_MAX_BYTES] = "";
	json_t *status = NULL, *ran_on;
	const char *self = NULL;

	if (api_get(c, "/v1/status", &status) == 0)
		self = json_string_value(json_object_get(status, "node_id"));
	value_text(json_object_get(job, "id"), id, sizeof(id),
	           FM_CLI_FIELD_MAX_COLS);
	value_text(json_object_get(job, "state"), state, sizeof(state),
	           FM_CLI_CELL_MAX_COLS);
	ran_on = json_object_get(job, "ran_on");
	if (json_is_string(ran_on)) {
		text_append(node, sizeof(node), json_string_value(ran_on),
		            FM_CLI_NODE_SHORT_LEN);
		fprintf(stderr,
		        "fedmesh: job %s %s on %s (%s), %zu attempt(s)\n", id,
		        state, node,
		        self != NULL && strcmp(self,
		                               json_string_value(ran_on)) == 0
		                ? "this node"
		                : "a peer",
		        json_array_size(json_object_get(job, "attempts")));
	} else {
		fprintf(stderr, "fedmesh: job %s %s, %zu attempt(s)\n", id,
		        state,
		        json_array_size(json_object_get(job, "attempts")));
	}
	attempts_print(stderr, job, self);
	json_decref(status);
}

static int cmd_run(cli *c)
{
	char path[FM_CLI_JOB_PATH_MAX];
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";
	json_t *request = NULL, *job = NULL, *next, *v;
	uint8_t *input = NULL, *output = NULL;
	size_t input_len = 0, output_len = 0;
	char *b64 = NULL, *body = NULL;
	const char *id;
	long wait_s = FM_CLI_WAIT_MAX_S;
	int rc;

	if (c->args_count != 1)
		return usage_error(c, "run needs the SERVICE to run, e.g. "
		                      "'echo hello | fedmesh run sha256'.");
	if (c->job_id != NULL && !job_id_valid(c->job_id)) {
		text_append(shown, sizeof(shown), c->job_id,
		            FM_CLI_ECHO_MAX_COLS);
		return usage_error(c,
		                   "--id '%s': a job ID is 1 to %d characters "
		                   "of A-Z, a-z, 0-9, '.', '_' and '-', not "
		                   "starting with '.'.",
		                   shown, FM_JOB_ID_MAX);
	}
	rc = stdin_read_all(c, &input, &input_len);
	if (rc < 0)
		goto cleanup;
	b64 = b64_encode(input != NULL ? input : (const uint8_t *)"",
	                 input_len);
	if (b64 == NULL) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -ENOMEM, "out of memory.");
		goto cleanup;
	}
	request = json_pack("{s:s, s:s}", "service", c->args[0], "input_b64",
	                    b64);
	if (request != NULL && c->job_id != NULL)
		json_object_set_new(request, "id", json_string(c->job_id));
	if (request != NULL && c->timeout_given)
		json_object_set_new(request, "timeout_ms",
		                    json_integer((json_int_t)c->timeout_ms));
	if (request != NULL && c->idempotent)
		json_object_set_new(request, "idempotent", json_true());
	if (request != NULL)
		body = json_dumps(request, JSON_COMPACT);
	if (body == NULL) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EINVAL,
		              "cannot build the request (is SERVICE valid "
		              "text?).");
		goto cleanup;
	}
	/* With a timeout, no wait needs to be longer than the job. */
	if (c->timeout_given && c->timeout_s + 1 < wait_s)
		wait_s = (long)c->timeout_s + 1;
	snprintf(path, sizeof(path), "/v1/jobs?wait=%ld", wait_s);
	rc = job_request(c, NULL, path, body, wait_s, &job);
	if (rc < 0)
		goto cleanup;
	id = json_string_value(json_object_get(job, "id"));
	if (id == NULL || !job_id_valid(id)) {
		rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
		              "the answer to POST /v1/jobs has no job ID.");
		goto cleanup;
	}
	/* Long-polls until the job is final; the daemon ends it at its
	 * timeout at the latest. */
	while (!job_state_final(job)) {
		snprintf(path, sizeof(path), "/v1/jobs/%s?wait=%ld", id,
		         wait_s);
		rc = job_request(c, NULL, path, NULL, wait_s, &next);
		if (rc < 0)
			goto cleanup;
		json_decref(job);
		job = next;
		id = json_string_value(json_object_get(job, "id"));
		if (id == NULL || !job_id_valid(id)) {
			rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
			              "unexpected answer to GET /v1/jobs/ID.");
			goto cleanup;
		}
	}
	if (c->verbose)
		job_report(c, job);
	if (c->json) {
		rc = json_print(c, job);
		if (rc < 0)
			goto cleanup;
	} else {
		v = json_object_get(job, "output_b64");
		if (json_is_string(v)) {
			rc = b64_decode(json_string_value(v),
			                json_string_length(v), &output,
			                &output_len);
			if (rc < 0) {
				rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EPROTO,
				              "the job's output is not valid "
				              "base64.");
				goto cleanup;
			}
			if (output_len > 0 && fwrite(output, 1, output_len,
			                             stdout) != output_len) {
				rc = cli_fail(c, FM_CLI_EXIT_ERROR, -EIO,
				              "cannot write to standard "
				              "output.");
				goto cleanup;
			}
		}
	}
	rc = job_exit(c, job);
cleanup:
	free(output);
	free(body);
	free(b64);
	free(input);
	json_decref(request);
	json_decref(job);
	return rc;
}

enum {
	JOB_COL_ID = 0,
	JOB_COL_SERVICE,
	JOB_COL_STATE,
	JOB_COL_CREATED,
	JOB_COL_RAN_ON,
	JOB_COL_EXIT,
	JOB_COL_ERROR,
	JOB_COL_COUNT
};

_Static_assert(JOB_COL_COUNT <= FM_CLI_TABLE_COLS_MAX, "job table columns");

static const char *const job_headers[JOB_COL_COUNT] = {
        "ID", "SERVICE", "STATE", "CREATED", "RAN ON", "EXIT", "ERROR"};

static void job_row_format(json_t *job, time_t now, table_row *row)
{
	json_t *ran_on = json_object_get(job, "ran_on");

	value_text(json_object_get(job, "id"), row->cell[JOB_COL_ID],
	           FM_CLI_CELL_MAX_BYTES, FM_CLI_CELL_MAX_COLS);
	value_text(json_object_get(job, "service"), row->cell[JOB_COL_SERVICE],
	           FM_CLI_CELL_MAX_BYTES, FM_CLI_CELL_MAX_COLS);
	value_text(json_object_get(job, "state"), row->cell[JOB_COL_STATE],
	           FM_CLI_CELL_MAX_BYTES, FM_CLI_CELL_MAX_COLS);
	ago_text(json_object_get(job, "created_at"), now,
	         row->cell[JOB_COL_CREATED], FM_CLI_CELL_MAX_BYTES);
	row->cell[JOB_COL_RAN_ON][0] = '\0';
	if (json_is_string(ran_on))
		text_append(row->cell[JOB_COL_RAN_ON], FM_CLI_CELL_MAX_BYTES,
		            json_string_value(ran_on), FM_CLI_NODE_SHORT_LEN);
	else
		snprintf(row->cell[JOB_COL_RAN_ON], FM_CLI_CELL_MAX_BYTES, "-");
	value_text(json_object_get(job, "exit_status"), row->cell[JOB_COL_EXIT],
	           FM_CLI_CELL_MAX_BYTES, FM_CLI_CELL_MAX_COLS);
	value_text(json_object_get(job, "error"), row->cell[JOB_COL_ERROR],
	           FM_CLI_CELL_MAX_BYTES, FM_CLI_ERROR_CELL_MAX_COLS);
}

static int cmd_jobs(cli *c)
{
	static const char *const states[] = {
	        "queued", "dispatched", "running",  "done",
	        "failed", "timed_out",  "cancelled"};
	char path[FM_CLI_JOB_PATH_MAX];
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";
	json_t *root = NULL;
	size_t i;
	int rc, done, known = 0;

	if (c->state != NULL) {
		for (i = 0; i < sizeof(states) / sizeof(states[0]); i++)
			known |= strcmp(c->state, states[i]) == 0;
		if (!known) {
			text_append(shown, sizeof(shown), c->state,
			            FM_CLI_ECHO_MAX_COLS);
			return usage_error(c,
			                   "--state '%s': one of queued, "
			                   "dispatched, running, done, failed, "
			                   "timed_out, cancelled.",
			                   shown);
		}
		snprintf(path, sizeof(path), "/v1/jobs?state=%s&limit=%d",
		         c->state, FM_CLI_JOBS_LIST_LIMIT);
	} else {
		snprintf(path, sizeof(path), "/v1/jobs?limit=%d",
		         FM_CLI_JOBS_LIST_LIMIT);
	}
	rc = api_get_shown(c, path, SHOWN_LIST, &root, &done);
	if (done)
		goto cleanup;
	if (json_array_size(root) == 0) {
		puts("No jobs.");
		rc = 0;
		goto cleanup;
	}
	table_print(root, job_headers, JOB_COL_COUNT, job_row_format);
	rc = 0;
cleanup:
	json_decref(root);
	return rc;
}

static int job_id_arg(cli *c, const char *what)
{
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";

	if (c->args_count != 1)
		return usage_error(c, "%s needs a job ID.", what);
	if (!job_id_valid(c->args[0])) {
		text_append(shown, sizeof(shown), c->args[0],
		            FM_CLI_ECHO_MAX_COLS);
		return usage_error(c, "'%s' is not a job ID.", shown);
	}
	return 0;
}

static int cmd_job(cli *c)
{
	static const char *const fields[] = {
	        "id",          "service",     "state",
	        "created_at",  "finished_at", "ran_on",
	        "exit_status", "output_len",  "error"};
	char path[FM_CLI_JOB_PATH_MAX];
	char text[FM_CLI_FIELD_MAX_BYTES];
	json_t *job = NULL;
	size_t i;
	int rc;

	rc = job_id_arg(c, "job");
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "/v1/jobs/%s", c->args[0]);
	rc = api_get(c, path, &job);
	if (rc < 0)
		goto cleanup;
	if (c->json) {
		rc = json_print(c, job);
		goto cleanup;
	}
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		value_text(json_object_get(job, fields[i]), text, sizeof(text),
		           FM_CLI_FIELD_MAX_COLS);
		printf("%-12s %s\n", fields[i], text[0] != '\0' ? text : "-");
	}
	attempts_print(stdout, job, NULL);
	rc = 0;
cleanup:
	json_decref(job);
	return rc;
}

static int cmd_cancel(cli *c)
{
	char path[FM_CLI_JOB_PATH_MAX];
	char text[FM_CLI_CELL_MAX_BYTES];
	json_t *job = NULL;
	int rc;

	rc = job_id_arg(c, "cancel");
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "/v1/jobs/%s", c->args[0]);
	rc = job_request(c, "DELETE", path, NULL, 0, &job);
	if (rc < 0)
		goto cleanup;
	if (c->json) {
		rc = json_print(c, job);
		goto cleanup;
	}
	value_text(json_object_get(job, "state"), text, sizeof(text),
	           FM_CLI_CELL_MAX_COLS);
	if (strcmp(text, "cancelled") == 0)
		printf("Cancelled.\n");
	else
		printf("Cancelling (the job is %s).\n", text);
	rc = 0;
cleanup:
	json_decref(job);
	return rc;
}

/* ---- main ---------------------------------------------------------------- */

/* ---- the DHT: fedmesh dht, fedmesh find -------------------------------- */

/* GET /v1/find waits up to 10 s for the lookup; the CLI waits a little
 * longer unless --timeout says otherwise. */
#define FM_CLI_FIND_TIMEOUT_S 15.0
/* Width of a bucket's bar: one character per entry of k = 20. */
#define FM_CLI_DHT_BAR_MAX 20
#define FM_CLI_FIND_PATH_MAX (sizeof("/v1/find/") + FM_SERVICE_NAME_MAX)

static uint64_t json_count(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_integer(v) && json_integer_value(v) > 0
	               ? (uint64_t)json_integer_value(v)
	               : 0;
}

static int cmd_dht(cli *c)
{
	char text[FM_CLI_FIELD_MAX_BYTES];
	char bar[FM_CLI_DHT_BAR_MAX + 1];
	json_t *root = NULL, *lookups, *buckets, *b, *dg, *v;
	size_t i;
	int rc, done;

	rc = api_get_shown(c, "/v1/dht", SHOWN_OBJECT, &root, &done);
	if (done)
		goto cleanup;
	if (!json_is_true(json_object_get(root, "enabled"))) {
		puts("The DHT is disabled on this node (fedmeshd --no-dht).");
		rc = 0;
		goto cleanup;
	}
	printf("Routing table:   %" PRIu64 " entries, %" PRIu64 " live\n",
	       json_count(root, "table_size"), json_count(root, "table_live"));
	printf("Known addresses: %" PRIu64 "\n",
	       json_count(root, "known_addrs"));
	printf("Values stored:   %" PRIu64 "\n",
	       json_count(root, "values_stored"));
	buckets = json_object_get(root, "buckets");
	if (json_array_size(buckets) > 0)
		printf("Buckets (index, entries of %d):\n", FM_CLI_DHT_BAR_MAX);
	for (i = 0; i < json_array_size(buckets); i++) {
		uint64_t fill, n;

		b = json_array_get(buckets, i);
		fill = json_count(b, "fill");
		n = fill > FM_CLI_DHT_BAR_MAX ? FM_CLI_DHT_BAR_MAX : fill;
		memset(bar, '#', (size_t)n);
		memset(bar + n, '.', FM_CLI_DHT_BAR_MAX - (size_t)n);
		bar[FM_CLI_DHT_BAR_MAX] = '\0';
		printf("  %3" PRIu64 "  %s %" PRIu64 "\n",
		       json_count(b, "index"), bar, fill);
	}
	lookups = json_object_get(root, "lookups");
	printf("Lookups:         %" PRIu64, json_count(lookups, "count"));
	v = json_object_get(lookups, "success_rate");
	if (json_is_number(v))
		printf(", %.1f%% succeeded", 100.0 * json_number_value(v));
	v = json_object_get(lookups, "hops_mean");
	if (json_is_number(v))
		printf(", %.2f hops", json_number_value(v));
	v = json_object_get(lookups, "messages_mean");
	if (json_is_number(v))
		printf(", %.1f messages on average", json_number_value(v));
	fputc('\n', stdout);
	ago_text(json_object_get(root, "last_bootstrap"), time(NULL), text,
	         sizeof(text));
	printf("Last bootstrap:  %s\n", text);
	dg = json_object_get(root, "datagrams");
	printf("Datagrams:       %" PRIu64 " received, %" PRIu64
	       " sent, %" PRIu64 " dropped; %" PRIu64 " RPC timeouts\n",
	       json_count(dg, "received"), json_count(dg, "sent"),
	       json_count(dg, "dropped"), json_count(root, "rpc_timeouts"));
	rc = 0;
cleanup:
	json_decref(root);
	return rc;
}

/* The service name rules of the protocol: [a-z0-9_.-], 1 to 32 bytes. */
static int service_name_valid(const char *s)
{
	size_t len = strlen(s);
	size_t i;

	if (len == 0 || len > FM_SERVICE_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

static int cmd_find(cli *c)
{
	char shown[FM_CLI_FIELD_MAX_BYTES] = "";
	char path[FM_CLI_FIND_PATH_MAX];
	char node[FM_CLI_CELL_MAX_BYTES];
	char slots[FM_CLI_CELL_MAX_BYTES];
	char addrs[FM_CLI_FIELD_MAX_BYTES];
	char one[FM_CLI_CELL_MAX_BYTES];
	json_t *root = NULL, *p, *list;
	size_t i, j;
	int rc, done;

	if (c->args_count != 1)
		return usage_error(c, "'fedmesh find' needs a SERVICE.");
	if (!service_name_valid(c->args[0])) {
		text_append(shown, sizeof(shown), c->args[0],
		            FM_CLI_ECHO_MAX_COLS);
		return usage_error(c,
		                   "'%s' is not a service name (1 to %d "
		                   "characters of a-z, 0-9, '_', '.', '-').",
		                   shown, FM_SERVICE_NAME_MAX);
	}
	if (!c->timeout_given) {
		c->timeout_s = FM_CLI_FIND_TIMEOUT_S;
		c->timeout_ms = (long)(FM_CLI_FIND_TIMEOUT_S * 1000);
	}
	snprintf(path, sizeof(path), "/v1/find/%s", c->args[0]);
	rc = api_get_shown(c, path, SHOWN_LIST, &root, &done);
	if (done)
		goto cleanup;
	if (json_array_size(root) == 0) {
		printf("No provider of '%s' found in the DHT.\n", c->args[0]);
		rc = 0;
		goto cleanup;
	}
	printf("%-*s  %-5s  %s\n", FM_CLI_NODE_SHORT_LEN, "NODE", "SLOTS",
	       "ADDRESSES");
	for (i = 0; i < json_array_size(root); i++) {
		p = json_array_get(root, i);
		/* A prefix, like git's short hashes: cut without "...". */
		snprintf(one, sizeof(one), "%.*s", FM_CLI_NODE_SHORT_LEN,
		         json_is_string(json_object_get(p, "node_id"))
		                 ? json_string_value(
		                           json_object_get(p, "node_id"))
		                 : "-");
		node[0] = '\0';
		text_append(node, sizeof(node), one, FM_CLI_CELL_MAX_COLS);
		value_text(json_object_get(p, "slots"), slots, sizeof(slots),
		           FM_CLI_CELL_MAX_COLS);
		addrs[0] = '\0';
		list = json_object_get(p, "addresses");
		for (j = 0; j < json_array_size(list); j++) {
			value_text(json_array_get(list, j), one, sizeof(one),
			           FM_CLI_CELL_MAX_COLS);
			if (j > 0)
				text_append(addrs, sizeof(addrs), ", ",
				            FM_CLI_FIELD_MAX_COLS);
			text_append(addrs, sizeof(addrs), one,
			            FM_CLI_FIELD_MAX_COLS);
		}
		printf("%-*s  %-5s  %s\n", FM_CLI_NODE_SHORT_LEN, node, slots,
		       addrs[0] != '\0' ? addrs : "-");
	}
	rc = 0;
cleanup:
	json_decref(root);
	return rc;
}

int main(int argc, char **argv)
{
	cli c;
	int curl_ready = 0;
	int rc;

	/* Only LC_CTYPE, for wcwidth(): LC_NUMERIC stays "C" so that strtod()
	 * and printf() keep using '.' as JSON does. */
	setlocale(LC_CTYPE, "");
	memset(&c, 0, sizeof(c));
	c.timeout_s = FM_CLI_TIMEOUT_DEFAULT_S;
	c.timeout_ms = (long)(FM_CLI_TIMEOUT_DEFAULT_S * 1000);

	rc = args_parse(&c, argc, argv);
	if (rc < 0)
		goto cleanup;
	if (c.want_help) {
		if (c.cmd != NULL && c.cmd->run != cmd_help)
			command_usage(c.cmd, stdout);
		else
			rc = cmd_help(&c);
		goto cleanup;
	}
	if (c.want_version) {
		printf("fedmesh %s\n", PACKAGE_VERSION);
		goto cleanup;
	}
	if (c.cmd == NULL) {
		usage_print(stderr);
		c.exit_code = FM_CLI_EXIT_USAGE;
		rc = -EINVAL;
		goto cleanup;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = cli_fail(&c, FM_CLI_EXIT_ERROR, -ENOMEM,
		              "cannot initialise libcurl.");
		goto cleanup;
	}
	curl_ready = 1;
	rc = c.cmd->run(&c);
cleanup:
	if (curl_ready)
		curl_global_cleanup();
	explicit_bzero(c.token, sizeof(c.token));
	/* A full disk or a closed pipe must not look like success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (rc == 0)
			rc = cli_fail(&c, FM_CLI_EXIT_ERROR, -EIO,
			              "cannot write to standard output.");
	}
	if (rc < 0)
		return c.exit_code != 0 ? c.exit_code : FM_CLI_EXIT_ERROR;
	return FM_CLI_EXIT_OK;
}
