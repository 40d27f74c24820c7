/* fedmeshd: process setup and teardown. Resolves the configuration, checks
 * the state directory and the identity, opens the store, starts the network
 * driver and the HTTP API on one libuv loop, and shuts all of it down in
 * order on SIGINT/SIGTERM (a second signal forces the exit). */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "api.h"
#include "jobs.h"
#include "keyfile.h"
#include "log.h"
#include "net.h"

#define FMD_ERR_MAX 512

static fmd daemon_ctx;
static fmd_net *net;
static uv_signal_t sig_int, sig_term;
static int shutting_down;
static int signals_ready;

uint64_t fmd_now_ms(const fmd *d)
{
	return uv_now(d->loop);
}

static int64_t unix_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int state_path(const fmd *d, const char *name, char *out, size_t out_len)
{
	int n = snprintf(out, out_len, "%s/%s", d->cfg.state_dir, name);

	return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
	fmd *d = h->data;

	if (shutting_down) {
		fmd_log(FM_LOG_WARN, "main", "second %s: exiting now",
		        strsignal(signum));
		_exit(128 + signum);
	}
	shutting_down = 1;
	fmd_log(FM_LOG_INFO, "main", "%s: shutting down", strsignal(signum));
	/* Stop accepting work; uv_run returns once the handles are closed. */
	fmd_api_stop(d->api);
	d->api = NULL;
	fmd_jobs_stop(d);
	/* Goodbyes first (mDNS TTL 0, CLOSE on each session), then the
	 * sockets close once those have left or FMD_NET_LINGER_MS passed. */
	fmd_net_shutdown(net);
	net = NULL;
	uv_signal_stop(&sig_int);
	uv_signal_stop(&sig_term);
	/* Keep listening for the forcing signal without holding the loop open.
	 */
	uv_signal_start(&sig_int, on_signal, SIGINT);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_unref((uv_handle_t *)&sig_int);
	uv_unref((uv_handle_t *)&sig_term);
}

/* api.addr tells the CLI where the API is; it exists only while we run. */
static int write_api_addr(fmd *d, char *err, size_t err_len)
{
	char path[FMD_PATH_MAX + 32];
	char line[FM_ADDR_STR_MAX + 2];
	int n;
	int rc;

	rc = state_path(d, FMD_ADDR_FILE, path, sizeof(path));
	if (rc != 0)
		return rc;
	n = snprintf(line, sizeof(line), "%s\n", d->api_addr);
	return fmd_file_write_atomic(path, line, (size_t)n, 0600, err, err_len);
}

static int write_token(fmd *d, char *token, char *err, size_t err_len)
{
	uint8_t raw[FMD_API_TOKEN_HEX_LEN / 2];
	char path[FMD_PATH_MAX + 32];
	char line[FMD_API_TOKEN_HEX_LEN + 2];
	int rc;

	rc = state_path(d, FMD_TOKEN_FILE, path, sizeof(path));
	if (rc != 0)
		return rc;
	/* A fresh token every start: a leaked one dies with the process. */
	randombytes_buf(raw, sizeof(raw));
	fm_hex_encode(raw, sizeof(raw), token);
	sodium_memzero(raw, sizeof(raw));
	snprintf(line, sizeof(line), "%s\n", token);
	rc = fmd_file_write_atomic(path, line, strlen(line), 0600, err,
	                           err_len);
	sodium_memzero(line, sizeof(line));
	return rc;
}

/* An invite on the command line carries the federation key, and argv is
 * readable by every local user through /proc/PID/cmdline: once copied, it
 * is wiped there. */
static void wipe_join_arg(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--join") == 0 && i + 1 < argc)
			sodium_memzero(argv[i + 1], strlen(argv[i + 1]));
		else if (strncmp(argv[i], "--join=", 7) == 0)
			sodium_memzero(argv[i] + 7, strlen(argv[i] + 7));
	}
}

/* Every node starts as a federation of one; --join replaces the key once,
 * before the node exists, so it starts in the new federation. */
static int federation_setup(fmd *d, char *err, size_t err_len)
{
	fm_addr addrs[FM_INVITE_ADDRS_MAX];
	char path[FMD_PATH_MAX + 32];
	size_t count = 0;
	int created = 0;
	int rc;

	rc = state_path(d, FMD_FEDERATION_KEY_FILE, path, sizeof(path));
	if (rc == 0)
		rc = fmd_federation_key_load_or_create(path, d->federation_key,
		                                       &created, err, err_len);
	if (rc != 0)
		return rc;
	if (created)
		fmd_log(FM_LOG_INFO, "main",
		        "created a new federation key: this node is a "
		        "federation of one until it joins another ('fedmesh "
		        "join INVITE')");
	if (d->cfg.join[0] == '\0')
		return 0;
	rc = fmd_federation_join(d, d->cfg.join, addrs, &count, err, err_len);
	sodium_memzero(d->cfg.join, sizeof(d->cfg.join));
	if (rc == -EINVAL) {
		char msg[FMD_ERR_MAX];

		snprintf(msg, sizeof(msg), "--join: %s", err);
		snprintf(err, err_len, "%s", msg);
	}
	return rc;
}

static void remove_api_addr(const fmd *d)
{
	char path[FMD_PATH_MAX + 32];

	if (state_path(d, FMD_ADDR_FILE, path, sizeof(path)) == 0)
		unlink(path);
}

int main(int argc, char **argv)
{
	char err[FMD_ERR_MAX] = "";
	char token[FMD_API_TOKEN_HEX_LEN + 1];
	char path[FMD_PATH_MAX + 32];
	fmd_config_env env;
	enum fmd_action action;
	fmd *d = &daemon_ctx;
	int created = 0;
	int exit_code = 1;
	int rc;

	/* fedmeshd as the exec helper of a job (services.c): limits, then
	 * the service's program; nothing else of the daemon runs. */
	if (argc > 1 && strcmp(argv[1], FMD_EXEC_CHILD_FLAG) == 0)
		return fmd_exec_child_main(argc, argv);
	env.xdg_state_home = getenv("XDG_STATE_HOME");
	env.xdg_config_home = getenv("XDG_CONFIG_HOME");
	env.home = getenv("HOME");
	rc = fmd_config_resolve(&d->cfg, argc, argv, &env, &action, err,
	                        sizeof(err));
	wipe_join_arg(argc, argv);
	if (rc != 0) {
		fprintf(stderr, "fedmeshd: %s\n", err);
		return 2;
	}
	switch (action) {
	case FMD_ACTION_HELP:
		fmd_config_usage(stdout, "fedmeshd");
		return 0;
	case FMD_ACTION_VERSION:
		printf("fedmeshd %s\n", fm_version());
		return 0;
	case FMD_ACTION_PRINT_CONFIG:
		fmd_config_print(&d->cfg, stdout);
		return 0;
	case FMD_ACTION_RUN:
		break;
	}
	fmd_log_init(stderr, d->cfg.log_format, d->cfg.log_level);
	if (geteuid() == 0 && !d->cfg.allow_root) {
		fmd_log(FM_LOG_ERROR, "main",
		        "refusing to run as root: fedmeshd is a per-user "
		        "daemon. Run it as your user, or pass --allow-root");
		return 1;
	}
	if (sodium_init() < 0) {
		fmd_log(FM_LOG_ERROR, "main", "libsodium failed to initialise");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	umask(077);

	rc = fmd_mkdir_private(d->cfg.state_dir, err, sizeof(err));
	if (rc != 0)
		goto fail;
	rc = state_path(d, FMD_IDENTITY_FILE, path, sizeof(path));
	if (rc == 0)
		rc = fmd_identity_load_or_create(path, &d->identity, &created,
		                                 err, sizeof(err));
	if (rc != 0)
		goto fail;
	fm_hex_encode(d->identity.node_id, FM_NODE_ID_BYTES, d->node_id_hex);
	fmd_log(FM_LOG_INFO, "main", "%s identity %s",
	        created ? "created new" : "loaded", d->node_id_hex);

	rc = state_path(d, "fedmesh.db", path, sizeof(path));
	if (rc == 0)
		rc = fmd_store_open(path, &d->store, err, sizeof(err));
	if (rc != 0)
		goto fail;
	rc = fmd_store_setting_set(d->store, "node_id", d->node_id_hex);
	if (rc != 0) {
		snprintf(err, sizeof(err), "cannot write to the store: %s",
		         strerror(-rc));
		goto fail;
	}
	rc = federation_setup(d, err, sizeof(err));
	if (rc != 0)
		goto fail;

	d->loop = uv_default_loop();
	d->started_mono_ms = uv_now(d->loop);
	d->started_unix_ms = unix_now_ms();
	rc = fmd_jobs_new(d, err, sizeof(err));
	if (rc != 0)
		goto fail;
	rc = fmd_net_start(d, &net, err, sizeof(err));
	if (rc != 0)
		goto fail;
	/* Unfinished jobs of the last run go back to the core. */
	fmd_jobs_start(d);
	rc = write_token(d, token, err, sizeof(err));
	if (rc != 0)
		goto fail;
	rc = fmd_api_start(d, d->cfg.api, token, &d->api, err, sizeof(err));
	sodium_memzero(token, sizeof(token));
	if (rc != 0)
		goto fail;
	rc = write_api_addr(d, err, sizeof(err));
	if (rc != 0)
		goto fail;

	uv_signal_init(d->loop, &sig_int);
	uv_signal_init(d->loop, &sig_term);
	sig_int.data = sig_term.data = d;
	uv_signal_start(&sig_int, on_signal, SIGINT);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	signals_ready = 1;

	fmd_log(FM_LOG_INFO, "main",
	        "fedmeshd %s running: node %s, peers on udp %s tcp %s, API "
	        "http://%s, state %s",
	        fm_version(), d->node_id_hex, d->listen_udp, d->listen_tcp,
	        d->api_addr, d->cfg.state_dir);
	uv_run(d->loop, UV_RUN_DEFAULT);
	exit_code = 0;
	goto cleanup;

fail:
	fmd_log(FM_LOG_ERROR, "main", "%s", err[0] ? err : strerror(-rc));
cleanup:
	fmd_api_stop(d->api);
	d->api = NULL;
	fmd_jobs_stop(d);
	fmd_net_stop(net);
	net = NULL;
	if (d->loop != NULL) {
		if (signals_ready) {
			uv_close((uv_handle_t *)&sig_int, NULL);
			uv_close((uv_handle_t *)&sig_term, NULL);
		}
		uv_run(d->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(d->loop) != 0)
			fmd_log(FM_LOG_WARN, "main",
			        "event loop closed with handles open");
		remove_api_addr(d);
	}
	fmd_jobs_free(d);
	fmd_store_close(d->store);
	fm_identity_wipe(&d->identity);
	sodium_memzero(d->federation_key, sizeof(d->federation_key));
	sodium_memzero(d->cfg.join, sizeof(d->cfg.join));
	if (exit_code == 0)
		fmd_log(FM_LOG_INFO, "main", "stopped cleanly");
	return exit_code;
}
