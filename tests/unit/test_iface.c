/* Unit tests of local discovery's interface policy in the daemon
 * (src/daemon/iface.c): which interface names are used, which addresses
 * are published for the bound peer address, the on-link check of unicast
 * mDNS sources, the mDNS host name, and a scan of this host's interfaces. */
#include <errno.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/iface.h"

static fm_addr addr(const char *text)
{
	fm_addr a;

	assert_int_equal(fm_addr_parse(text, &a), 0);
	return a;
}

static void test_default_policy(void **state)
{
	static const char *const skipped[] = {
	        "docker0", "veth1a2b", "br-0123abcd", "tun0", "tap3", "wg0",
	};
	static const char *const used[] = {"eth0",   "wlan0", "enp3s0",
	                                   "wlp2s0", "br0",   "virbr0"};
	fmd_config cfg;
	size_t i;

	(void)state;
	fmd_config_defaults(&cfg, NULL, "/home/u");
	for (i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
		assert_int_equal(fmd_iface_allowed(&cfg, skipped[i]), 0);
	for (i = 0; i < sizeof(used) / sizeof(used[0]); i++)
		assert_int_equal(fmd_iface_allowed(&cfg, used[i]), 1);
	assert_int_equal(fmd_iface_allowed(&cfg, ""), 0);
	assert_int_equal(fmd_iface_allowed(&cfg, NULL), 0);
}

static void test_include_exclude(void **state)
{
	fmd_config cfg;

	(void)state;
	fmd_config_defaults(&cfg, NULL, "/home/u");
	/* An include list replaces the default skip list... */
	strcpy(cfg.ifaces_include[0], "en*");
	strcpy(cfg.ifaces_include[1], "docker0");
	cfg.ifaces_include_count = 2;
	assert_int_equal(fmd_iface_allowed(&cfg, "enp3s0"), 1);
	assert_int_equal(fmd_iface_allowed(&cfg, "docker0"), 1);
	assert_int_equal(fmd_iface_allowed(&cfg, "eth0"), 0);
	assert_int_equal(fmd_iface_allowed(&cfg, "docker1"), 0);
	/* ...and the exclude list wins over both. */
	strcpy(cfg.ifaces_exclude[0], "enp0s*");
	cfg.ifaces_exclude_count = 1;
	assert_int_equal(fmd_iface_allowed(&cfg, "enp0s31f6"), 0);
	assert_int_equal(fmd_iface_allowed(&cfg, "enp3s0"), 1);
	cfg.ifaces_include_count = 0;
	strcpy(cfg.ifaces_exclude[0], "wlan?");
	assert_int_equal(fmd_iface_allowed(&cfg, "wlan0"), 0);
	assert_int_equal(fmd_iface_allowed(&cfg, "wlan10"), 1);
	assert_int_equal(fmd_iface_allowed(&cfg, "veth0"), 0);
}

static void test_dialable(void **state)
{
	fm_addr any4 = addr("0.0.0.0:7420");
	fm_addr any6 = addr("[::]:7420");
	fm_addr one4 = addr("192.0.2.7:7420");
	fm_addr v4 = addr("192.0.2.7:0");
	fm_addr other4 = addr("192.0.2.8:0");
	fm_addr v6 = addr("[2001:db8::7]:0");
	fm_addr ll6 = addr("[fe80::1]:0");

	(void)state;
	assert_int_equal(fmd_iface_addr_dialable(&any4, &v4), 1);
	assert_int_equal(fmd_iface_addr_dialable(&any4, &v6), 0);
	assert_int_equal(fmd_iface_addr_dialable(&any6, &v4), 1);
	assert_int_equal(fmd_iface_addr_dialable(&any6, &v6), 1);
	/* No scope ID in fm_addr: nobody could dial it. */
	assert_int_equal(fmd_iface_addr_dialable(&any6, &ll6), 0);
	assert_int_equal(fmd_iface_addr_dialable(&one4, &v4), 1);
	assert_int_equal(fmd_iface_addr_dialable(&one4, &other4), 0);
	assert_int_equal(fmd_iface_addr_dialable(&one4, &v6), 0);
}

static void test_on_link(void **state)
{
	fmd_iface ifc;

	(void)state;
	memset(&ifc, 0, sizeof(ifc));
	ifc.nets[0] = addr("10.77.0.1:0");
	ifc.prefix_len[0] = 24;
	ifc.nets[1] = addr("172.16.0.1:0");
	ifc.prefix_len[1] = 20;
	ifc.nets[2] = addr("[2001:db8:1::1]:0");
	ifc.prefix_len[2] = 64;
	ifc.net_count = 3;
	assert_int_equal(fmd_iface_on_link(&ifc, &(fm_addr){0}), 0);
	{
		fm_addr in = addr("10.77.0.200:5353");
		fm_addr out = addr("10.77.1.2:5353");
		fm_addr in20 = addr("172.16.15.255:5353");
		fm_addr out20 = addr("172.16.16.0:5353");
		fm_addr in6 = addr("[2001:db8:1::99]:5353");
		fm_addr out6 = addr("[2001:db8:2::1]:5353");
		fm_addr ll = addr("[fe80::1234]:5353");

		assert_int_equal(fmd_iface_on_link(&ifc, &in), 1);
		assert_int_equal(fmd_iface_on_link(&ifc, &out), 0);
		assert_int_equal(fmd_iface_on_link(&ifc, &in20), 1);
		assert_int_equal(fmd_iface_on_link(&ifc, &out20), 0);
		assert_int_equal(fmd_iface_on_link(&ifc, &in6), 1);
		assert_int_equal(fmd_iface_on_link(&ifc, &out6), 0);
		assert_int_equal(fmd_iface_on_link(&ifc, &ll), 1);
	}
}

static void test_hostname(void **state)
{
	const char *id = "0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123"
	                 "abcd0123abcd";
	char out[FM_HOSTNAME_MAX + 1];
	char longname[200];
	fmd_config cfg;

	(void)state;
	fmd_config_defaults(&cfg, NULL, "/home/u");
	fmd_iface_hostname(&cfg, "laptop", id, out);
	assert_string_equal(out, "laptop-0123abcd");
	/* The first label only; anything else becomes one '-'. */
	fmd_iface_hostname(&cfg, "My_Host..example.com", id, out);
	assert_string_equal(out, "My-Host-0123abcd");
	fmd_iface_hostname(&cfg, "__a__b__", id, out);
	assert_string_equal(out, "a-b-0123abcd");
	fmd_iface_hostname(&cfg, "", id, out);
	assert_string_equal(out, "fedmesh-0123abcd");
	fmd_iface_hostname(&cfg, "\xc3\xa9t\xc3\xa9", id, out);
	assert_string_equal(out, "t-0123abcd");
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	fmd_iface_hostname(&cfg, longname, id, out);
	assert_int_equal(strlen(out), FM_HOSTNAME_MAX);
	assert_string_equal(out + FM_HOSTNAME_MAX - 9, "-0123abcd");
	/* The configured name is used as it is. */
	strcpy(cfg.mdns_hostname, "lab-7");
	fmd_iface_hostname(&cfg, "laptop", id, out);
	assert_string_equal(out, "lab-7");
	/* gethostname() when no name is passed. */
	cfg.mdns_hostname[0] = '\0';
	fmd_iface_hostname(&cfg, NULL, id, out);
	assert_true(strlen(out) > 9 && strlen(out) <= FM_HOSTNAME_MAX);
}

/* Whatever this host has: the scan succeeds and its result keeps every
 * promise of iface.h. */
static void test_scan_this_host(void **state)
{
	fmd_iface list[FM_IFACES_MAX];
	fm_addr any4 = addr("0.0.0.0:7420");
	size_t count = 0, skipped = 0, i, j;
	fmd_config cfg;

	(void)state;
	fmd_config_defaults(&cfg, NULL, "/home/u");
	assert_int_equal(fmd_iface_scan(&cfg, &any4, 1, 1, list, FM_IFACES_MAX,
	                                &count, &skipped),
	                 0);
	for (i = 0; i < count; i++) {
		assert_true(list[i].fm.index > 0);
		assert_true(i == 0 || list[i - 1].fm.index < list[i].fm.index);
		assert_int_equal(list[i].flags & IFF_LOOPBACK, 0);
		assert_int_equal(fmd_iface_allowed(&cfg, list[i].fm.name), 1);
		assert_true(list[i].fm.addr_count > 0 ||
		            list[i].fm.broadcast_count > 0);
		for (j = 0; j < list[i].fm.addr_count; j++) {
			assert_int_equal(list[i].fm.addrs[j].family,
			                 FM_AF_INET);
			assert_int_equal(list[i].fm.addrs[j].port, 0);
		}
	}
	/* Nothing wanted: nothing found. */
	assert_int_equal(fmd_iface_scan(&cfg, &any4, 0, 0, list, FM_IFACES_MAX,
	                                &count, &skipped),
	                 0);
	assert_int_equal(count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_default_policy),
	        cmocka_unit_test(test_include_exclude),
	        cmocka_unit_test(test_dialable),
	        cmocka_unit_test(test_on_link),
	        cmocka_unit_test(test_hostname),
	        cmocka_unit_test(test_scan_this_host),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
