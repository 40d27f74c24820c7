/* Text form of fm_addr. The core keeps its own address type so it does not
 * depend on the socket API (the simulator invents addresses); parsing is
 * numeric only and bounded, because addresses arrive from invites, config
 * files and peers. inet_pton/inet_ntop are pure string functions, not I/O. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

int fm_addr_format(const fm_addr *addr, char *out, size_t out_len)
{
	char ip[INET6_ADDRSTRLEN];
	int n;

	if (addr == NULL || out == NULL || out_len == 0)
		return -EINVAL;
	if (addr->family == FM_AF_INET) {
		if (inet_ntop(AF_INET, addr->ip, ip, sizeof(ip)) == NULL)
			return -EINVAL;
		n = snprintf(out, out_len, "%s:%u", ip, (unsigned)addr->port);
	} else if (addr->family == FM_AF_INET6) {
		if (inet_ntop(AF_INET6, addr->ip, ip, sizeof(ip)) == NULL)
			return -EINVAL;
		n = snprintf(out, out_len, "[%s]:%u", ip, (unsigned)addr->port);
	} else {
		return -EINVAL;
	}
	if (n < 0 || (size_t)n >= out_len)
		return -EINVAL;
	return 0;
}

static int parse_port(const char *text, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (text[0] == '\0' || strlen(text) > 5)
		return -EINVAL;
	for (i = 0; text[i] != '\0'; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(text[i] - '0');
	}
	if (v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

int fm_addr_parse(const char *text, fm_addr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon;
	const char *host_start;
	size_t host_len;
	fm_addr a;

	if (text == NULL || out == NULL || strlen(text) >= FM_ADDR_STR_MAX)
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		host_start = text + 1;
		host_len = (size_t)(close - host_start);
		colon = close + 1;
		a.family = FM_AF_INET6;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return -EINVAL;
		host_start = text;
		host_len = (size_t)(colon - text);
		a.family = FM_AF_INET;
	}
	if (host_len == 0 || host_len >= sizeof(host))
		return -EINVAL;
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	if (a.family == FM_AF_INET) {
		if (inet_pton(AF_INET, host, a.ip) != 1)
			return -EINVAL;
	} else if (inet_pton(AF_INET6, host, a.ip) != 1) {
		return -EINVAL;
	}
	if (parse_port(colon + 1, &a.port) != 0)
		return -EINVAL;
	*out = a;
	return 0;
}
