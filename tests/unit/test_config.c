/* Unit tests of configuration resolution: embedded defaults < INI file <
 * command-line flags, XDG paths, and clear errors for bad input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "daemon/config.h"

static char tmpdir[64];

static int group_setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/fedmesh-test-config-XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_text(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	fclose(fp);
}

/* Runs resolve() on a NULL-terminated argument list. */
static int resolve(fmd_config *cfg, const fmd_config_env *env,
                   enum fmd_action *action, char *err, size_t err_len, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	char *arg;

	argv[argc++] = (char *)"fedmeshd";
	va_start(ap, err_len);
	while ((arg = va_arg(ap, char *)) != NULL && argc < 31)
		argv[argc++] = arg;
	va_end(ap);
	argv[argc] = NULL;
	return fmd_config_resolve(cfg, argc, argv, env, action, err, err_len);
}

static void test_defaults(void **state)
{
	fmd_config cfg;

	(void)state;
	fmd_config_defaults(&cfg, "/x/state", "/home/u");
	assert_string_equal(cfg.state_dir, "/x/state/fedmesh");
	assert_string_equal(cfg.listen, "0.0.0.0:7420");
	assert_string_equal(cfg.api, "127.0.0.1:7421");
	assert_int_equal(cfg.log_format, FMD_LOG_TEXT);
	assert_int_equal(cfg.log_level, FM_LOG_INFO);
	assert_int_equal(cfg.bootstrap_count, 0);
	fmd_config_defaults(&cfg, NULL, "/home/u");
	assert_string_equal(cfg.state_dir, "/home/u/.local/state/fedmesh");
	/* a relative XDG_STATE_HOME is invalid per the XDG spec: ignored */
	fmd_config_defaults(&cfg, "rel/dir", "/home/u");
	assert_string_equal(cfg.state_dir, "/home/u/.local/state/fedmesh");
}

static void test_precedence(void **state)
{
	fmd_config_env env = {NULL, NULL, "/home/u"};
	enum fmd_action action;
	char path[128];
	char err[256];
	fmd_config cfg;

	(void)state;
	snprintf(path, sizeof(path), "%s/prec.conf", tmpdir);
	write_text(path, "[node]\nlisten = 127.0.0.1:9000\n"
	                 "bootstrap = 10.0.0.1:7420\n"
	                 "bootstrap = 10.0.0.2:7420\n"
	                 "[api]\nlisten = 127.0.0.1:9001\n"
	                 "[log]\nlevel = debug\nformat = json\n");
	/* file over defaults */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 0);
	assert_int_equal(action, FMD_ACTION_RUN);
	assert_string_equal(cfg.listen, "127.0.0.1:9000");
	assert_string_equal(cfg.api, "127.0.0.1:9001");
	assert_int_equal(cfg.log_level, FM_LOG_DEBUG);
	assert_int_equal(cfg.log_format, FMD_LOG_JSON);
	assert_int_equal(cfg.bootstrap_count, 2);
	assert_string_equal(cfg.config_file, path);
	/* untouched keys keep their defaults */
	assert_string_equal(cfg.state_dir, "/home/u/.local/state/fedmesh");
	/* flags over the file, whatever their position */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--listen", "0.0.0.0:0", "--config", path,
	                         "--log-level", "warn", "--bootstrap",
	                         "[::1]:7420", "--state-dir", "/s", NULL),
	                 0);
	assert_string_equal(cfg.listen, "0.0.0.0:0");
	assert_string_equal(cfg.api, "127.0.0.1:9001");
	assert_int_equal(cfg.log_level, FM_LOG_WARN);
	assert_int_equal(cfg.log_format, FMD_LOG_JSON);
	assert_string_equal(cfg.state_dir, "/s");
	/* flags replace the file's bootstrap list rather than append */
	assert_int_equal(cfg.bootstrap_count, 1);
	assert_string_equal(cfg.bootstrap[0], "[::1]:7420");
}

static void test_default_file_location(void **state)
{
	fmd_config_env env = {NULL, NULL, NULL};
	enum fmd_action action;
	char dir[128], path[160];
	char err[256];
	fmd_config cfg;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/xdgconf", tmpdir);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/fedmesh", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/fedmesh/fedmesh.conf", dir);
	env.xdg_config_home = dir;
	env.xdg_state_home = "/st";
	/* no file yet: embedded defaults, no error */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), NULL),
	                 0);
	assert_string_equal(cfg.config_file, "");
	write_text(path, "[api]\nlisten = [::1]:0\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), NULL),
	                 0);
	assert_string_equal(cfg.api, "[::1]:0");
	assert_string_equal(cfg.config_file, path);
	assert_string_equal(cfg.state_dir, "/st/fedmesh");
}

static void test_errors(void **state)
{
	fmd_config_env env = {NULL, NULL, "/home/u"};
	enum fmd_action action;
	char path[128];
	char err[256];
	char longline[400];
	fmd_config cfg;

	(void)state;
	snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
	/* an explicit --config that does not exist is an error */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         "/nonexistent/fedmesh.conf", NULL),
	                 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/fedmesh.conf"));

	write_text(path, "[node]\nlisten = 0.0.0.0:7420\nfrobnicate = 1\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, ":3:"));
	assert_non_null(strstr(err, "frobnicate"));

	write_text(path, "[node]\nlisten = example.com:7420\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "example.com:7420"));

	write_text(path, "[log]\nlevel = loud\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -EINVAL);

	write_text(path, "this is not ini\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -EINVAL);

	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	memcpy(longline, "# ", 2);
	write_text(path, longline);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "longer than"));

	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--listen", "nope", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--no-such-flag", NULL),
	                 -EINVAL);
	assert_int_equal(
	        resolve(&cfg, &env, &action, err, sizeof(err), "stray", NULL),
	        -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--state-dir", "relative", NULL),
	                 -EINVAL);
	/* no HOME and no XDG_STATE_HOME: nowhere to keep state */
	env.home = NULL;
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), NULL),
	                 -EINVAL);
}

static void test_bootstrap_limit(void **state)
{
	fmd_config_env env = {NULL, NULL, "/home/u"};
	enum fmd_action action;
	char path[128];
	char err[256];
	char text[2048] = "[node]\n";
	fmd_config cfg;
	int i;

	(void)state;
	for (i = 0; i <= FMD_BOOTSTRAP_MAX; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
		         "bootstrap = 10.0.0.%d:7420\n", i + 1);
	snprintf(path, sizeof(path), "%s/many.conf", tmpdir);
	write_text(path, text);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -E2BIG);
}

static void test_actions_and_print_round_trip(void **state)
{
	fmd_config_env env = {NULL, NULL, "/home/u"};
	enum fmd_action action;
	char path[128];
	char err[256];
	fmd_config cfg, again;
	FILE *fp;

	(void)state;
	assert_int_equal(
	        resolve(&cfg, &env, &action, err, sizeof(err), "-h", NULL), 0);
	assert_int_equal(action, FMD_ACTION_HELP);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--version", NULL),
	                 0);
	assert_int_equal(action, FMD_ACTION_VERSION);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--print-config", "--api", "127.0.0.1:0",
	                         "--bootstrap", "10.1.2.3:7420", "--allow-root",
	                         "--log-format", "json", NULL),
	                 0);
	assert_int_equal(action, FMD_ACTION_PRINT_CONFIG);
	snprintf(path, sizeof(path), "%s/printed.conf", tmpdir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fmd_config_print(&cfg, fp);
	fclose(fp);
	fmd_config_defaults(&again, NULL, "/elsewhere");
	assert_int_equal(fmd_config_load_file(&again, path, err, sizeof(err)),
	                 0);
	assert_string_equal(again.state_dir, cfg.state_dir);
	assert_string_equal(again.listen, cfg.listen);
	assert_string_equal(again.api, "127.0.0.1:0");
	assert_int_equal(again.bootstrap_count, 1);
	assert_string_equal(again.bootstrap[0], "10.1.2.3:7420");
	assert_int_equal(again.allow_root, 1);
	assert_int_equal(again.log_format, FMD_LOG_JSON);
	assert_int_equal(again.log_level, cfg.log_level);
}

/* --advertise: repeatable, flags replace the file's list, only dialable
 * addresses; --join: a flag only, never printed (it carries the key). */
static void test_advertise_and_join(void **state)
{
	fmd_config_env env = {NULL, NULL, "/home/u"};
	enum fmd_action action;
	char path[128];
	char err[256];
	char printed[4096];
	char text[2048] = "[node]\n";
	fmd_config cfg;
	FILE *fp;
	size_t n;
	int i;

	(void)state;
	snprintf(path, sizeof(path), "%s/adv.conf", tmpdir);
	write_text(path, "[node]\nadvertise = 192.0.2.1:7420\n"
	                 "advertise = [2001:db8::1]:7420\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 0);
	assert_int_equal(cfg.advertise_count, 2);
	assert_string_equal(cfg.advertise[1], "[2001:db8::1]:7420");
	assert_string_equal(cfg.join, "");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, "--advertise", "198.51.100.9:1",
	                         "--join", "fedmesh1secret", NULL),
	                 0);
	assert_int_equal(cfg.advertise_count, 1);
	assert_string_equal(cfg.advertise[0], "198.51.100.9:1");
	assert_string_equal(cfg.join, "fedmesh1secret");

	fp = fmemopen(printed, sizeof(printed), "w");
	assert_non_null(fp);
	fmd_config_print(&cfg, fp);
	n = (size_t)ftell(fp);
	fclose(fp);
	printed[n < sizeof(printed) ? n : sizeof(printed) - 1] = '\0';
	assert_non_null(strstr(printed, "advertise = 198.51.100.9:1\n"));
	assert_null(strstr(printed, "secret"));
	assert_null(strstr(printed, "join"));

	/* Not addresses a peer can dial. */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--advertise", "0.0.0.0:7420", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "0.0.0.0:7420"));
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--advertise", "[::]:7420", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--advertise", "192.0.2.1:0", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--advertise", "host.example:7420", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--join", "", NULL),
	                 -EINVAL);

	/* The invite is no config-file key. */
	snprintf(path, sizeof(path), "%s/join.conf", tmpdir);
	write_text(path, "[node]\njoin = fedmesh1abc\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "unknown option"));

	for (i = 0; i <= FMD_ADVERTISE_MAX; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
		         "advertise = 10.0.0.%d:7420\n", i + 1);
	snprintf(path, sizeof(path), "%s/many-adv.conf", tmpdir);
	write_text(path, text);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -E2BIG);
}

/* [discovery]: on by default; mdns/beacon booleans, interface lists with
 * wildcards (comma lists or repeated keys), flags replace the file's
 * lists, bad names are refused, and --print-config reads back the same. */
static void test_discovery(void **state)
{
	fmd_config_env env = {NULL, NULL, "/home/u"};
	enum fmd_action action;
	char path[128];
	char err[256];
	char printed[4096];
	char text[2048] = "[discovery]\n";
	fmd_config cfg, again;
	FILE *fp;
	size_t n;
	int i;

	(void)state;
	fmd_config_defaults(&cfg, NULL, "/home/u");
	assert_int_equal(cfg.mdns, 1);
	assert_int_equal(cfg.beacon, 1);
	assert_int_equal(cfg.ifaces_include_count, 0);
	assert_int_equal(cfg.ifaces_exclude_count, 0);
	assert_string_equal(cfg.mdns_hostname, "");

	snprintf(path, sizeof(path), "%s/disc.conf", tmpdir);
	write_text(path, "[discovery]\nmdns = false\nbeacon = no\n"
	                 "interfaces = eth0, wlan* ,en[ps]*\n"
	                 "interfaces = usb0\nexclude = wlan1\n"
	                 "hostname = my-box\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 0);
	assert_int_equal(cfg.mdns, 0);
	assert_int_equal(cfg.beacon, 0);
	assert_int_equal(cfg.ifaces_include_count, 4);
	assert_string_equal(cfg.ifaces_include[0], "eth0");
	assert_string_equal(cfg.ifaces_include[1], "wlan*");
	assert_string_equal(cfg.ifaces_include[2], "en[ps]*");
	assert_string_equal(cfg.ifaces_include[3], "usb0");
	assert_int_equal(cfg.ifaces_exclude_count, 1);
	assert_string_equal(cfg.mdns_hostname, "my-box");

	/* Flags: --mdns-interface replaces the file's list. */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, "--mdns-interface", "br0",
	                         "--mdns-interface", "eth1", "--mdns-exclude",
	                         "eth9", NULL),
	                 0);
	assert_int_equal(cfg.ifaces_include_count, 2);
	assert_string_equal(cfg.ifaces_include[0], "br0");
	assert_string_equal(cfg.ifaces_include[1], "eth1");
	assert_int_equal(cfg.ifaces_exclude_count, 1);
	assert_string_equal(cfg.ifaces_exclude[0], "eth9");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--no-mdns", "--mdns-hostname", "lab-7", NULL),
	                 0);
	assert_int_equal(cfg.mdns, 0);
	assert_int_equal(cfg.beacon, 1);
	assert_string_equal(cfg.mdns_hostname, "lab-7");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--no-beacon", NULL),
	                 0);
	assert_int_equal(cfg.mdns, 1);
	assert_int_equal(cfg.beacon, 0);

	/* Print and read back. */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 0);
	fp = fmemopen(printed, sizeof(printed), "w");
	assert_non_null(fp);
	fmd_config_print(&cfg, fp);
	n = (size_t)ftell(fp);
	fclose(fp);
	printed[n < sizeof(printed) ? n : sizeof(printed) - 1] = '\0';
	assert_non_null(strstr(printed, "[discovery]\nmdns = false\n"));
	fmd_config_defaults(&again, NULL, "/home/u");
	assert_int_equal(fmd_config_load_string(&again, printed, "printed", err,
	                                        sizeof(err)),
	                 0);
	assert_int_equal(again.mdns, 0);
	assert_int_equal(again.beacon, 0);
	assert_int_equal(again.ifaces_include_count, 4);
	assert_string_equal(again.ifaces_include[2], "en[ps]*");
	assert_int_equal(again.ifaces_exclude_count, 1);
	assert_string_equal(again.mdns_hostname, "my-box");

	/* Refused: not a boolean, empty or spaced names, separators, too
	 * long, host names that are not one label. */
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--mdns-interface", "", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--mdns-interface", "eth0,,eth1", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--mdns-interface", "eth 0", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "interfaces"));
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--mdns-exclude", "a/b", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--mdns-interface",
	                         "abcdefghijklmnopqrstuvwxyz0123456789", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--mdns-hostname", "a.local", NULL),
	                 -EINVAL);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
	                         "--mdns-hostname", "-x", NULL),
	                 -EINVAL);
	write_text(path, "[discovery]\nmdns = maybe\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "mdns"));
	for (i = 0; i <= FMD_IFACE_PATTERNS_MAX; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
		         "exclude = eth%d\n", i);
	write_text(path, text);
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 -E2BIG);
}

/* [limits]: defaults, values from the file, bounds, and a printed
 * configuration that reads back the same. */
static void test_limits(void **state)
{
	static const char *const bad[] = {
	        "connections_max = 0",
	        "connections_max = 1025",
	        "handshakes_max = 257",
	        "handshakes_max = -1",
	        "source_handshakes_per_s = ",
	        "jobs_pending_max = 1e3",
	        "peer_queue_max = 1K",
	        "peer_queue_max = 2G",
	        "queue = 1",
	};
	fmd_config_env env = {NULL, NULL, "/home/u"};
	enum fmd_action action;
	char path[128], text[256], err[256];
	fmd_config cfg, again;
	FILE *fp;
	size_t i;

	(void)state;
	fmd_config_defaults(&cfg, NULL, "/home/u");
	assert_int_equal(cfg.limits.connections_max, 256);
	assert_int_equal(cfg.limits.handshakes_max, 32);
	assert_int_equal(cfg.limits.source_handshakes_per_s, 10);
	assert_int_equal(cfg.limits.jobs_pending_max, 65536);
	assert_int_equal(cfg.limits.peer_queue_max_bytes, 8 * 1024 * 1024);

	snprintf(path, sizeof(path), "%s/limits.conf", tmpdir);
	write_text(path,
	           "[limits]\nconnections_max = 1024\nhandshakes_max = 1\n"
	           "source_handshakes_per_s = 500\n"
	           "jobs_pending_max = 7\npeer_queue_max = 64K\n");
	assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 0);
	assert_int_equal(cfg.limits.connections_max, 1024);
	assert_int_equal(cfg.limits.handshakes_max, 1);
	assert_int_equal(cfg.limits.source_handshakes_per_s, 500);
	assert_int_equal(cfg.limits.jobs_pending_max, 7);
	assert_int_equal(cfg.limits.peer_queue_max_bytes, 65536);

	/* What --print-config writes reads back to the same limits. */
	snprintf(path, sizeof(path), "%s/limits-printed.conf", tmpdir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fmd_config_print(&cfg, fp);
	fclose(fp);
	assert_int_equal(resolve(&again, &env, &action, err, sizeof(err), "-c",
	                         path, NULL),
	                 0);
	assert_memory_equal(&again.limits, &cfg.limits, sizeof(cfg.limits));

	snprintf(path, sizeof(path), "%s/limits-bad.conf", tmpdir);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[limits]\n%s\n", bad[i]);
		write_text(path, text);
		err[0] = '\0';
		assert_int_equal(resolve(&cfg, &env, &action, err, sizeof(err),
		                         "-c", path, NULL),
		                 -EINVAL);
		assert_non_null(strstr(err, "[limits]"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_precedence),
	        cmocka_unit_test(test_default_file_location),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_bootstrap_limit),
	        cmocka_unit_test(test_actions_and_print_round_trip),
	        cmocka_unit_test(test_advertise_and_join),
	        cmocka_unit_test(test_discovery),
	        cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
