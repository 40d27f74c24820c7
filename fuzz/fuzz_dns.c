/* Harness: the DNS message codec of mDNS / DNS-SD (src/core/dns.c). The
 * input is one packet. Whatever parses is written back with the core's
 * writer (the codec promises that a parsed name written back gives the
 * same name), parsed again, and must give the same questions and records. */
#include <errno.h>
#include <string.h>

#include "core/dns.h"
#include "fuzz.h"

static fm__dns_message first, second;
static uint8_t packet[FM__DNS_PACKET_MAX];

static int rdata_equal(const fm__dns_record *a, const fm__dns_record *b)
{
	switch (a->type) {
	case FM__DNS_A:
		return memcmp(a->rd.a, b->rd.a, sizeof(a->rd.a)) == 0;
	case FM__DNS_AAAA:
		return memcmp(a->rd.aaaa, b->rd.aaaa, sizeof(a->rd.aaaa)) == 0;
	case FM__DNS_PTR:
		return strcmp(a->rd.ptr, b->rd.ptr) == 0;
	case FM__DNS_SRV:
		return a->rd.srv.priority == b->rd.srv.priority &&
		       a->rd.srv.weight == b->rd.srv.weight &&
		       a->rd.srv.port == b->rd.srv.port &&
		       strcmp(a->rd.srv.target, b->rd.srv.target) == 0;
	case FM__DNS_TXT: {
		uint8_t i;
		if (a->rd.txt.count != b->rd.txt.count)
			return 0;
		for (i = 0; i < a->rd.txt.count; i++)
			if (strcmp(a->rd.txt.strings[i],
			           b->rd.txt.strings[i]) != 0)
				return 0;
		return 1;
	}
	default:
		return a->rd.raw.len == b->rd.raw.len &&
		       memcmp(a->rd.raw.data, b->rd.raw.data, a->rd.raw.len) ==
		               0;
	}
}

static int truncated(const fm__dns_record *r)
{
	switch (r->type) {
	case FM__DNS_A:
	case FM__DNS_AAAA:
	case FM__DNS_PTR:
	case FM__DNS_SRV:
		return 0;
	case FM__DNS_TXT:
		return r->rd.txt.truncated;
	default:
		return r->rd.raw.truncated;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fm__dns_writer w;
	size_t len = 0;
	uint8_t i;
	int rc;

	rc = fm__dns_parse(data, size, &first);
	if (rc != 0) {
		if (rc != -EBADMSG && rc != -EMSGSIZE)
			fz_fail("dns", "fm__dns_parse: unexpected error");
		return 0;
	}
	if (first.question_count > FM__DNS_QUESTIONS_MAX ||
	    first.record_count > FM__DNS_RECORDS_MAX)
		fz_fail("dns", "more entries kept than the limits");
	/* Names compare equal to themselves (escapes decoded). */
	for (i = 0; i < first.question_count; i++)
		if (!fm__dns_name_equal(first.questions[i].name,
		                        first.questions[i].name))
			fz_fail("dns", "a parsed name is not a valid name");
	/* Write back what was kept, unless something was cut short. */
	for (i = 0; i < first.record_count; i++)
		if (truncated(&first.records[i]))
			return 0;
	fm__dns_writer_init(&w, packet, sizeof(packet), first.id, first.flags);
	for (i = 0; i < first.question_count; i++) {
		const fm__dns_question *q = &first.questions[i];
		rc = fm__dns_add_question(&w, q->name, q->type, q->class_);
		if (rc == -ENOSPC)
			return 0;
		if (rc != 0)
			fz_fail("dns", "a parsed question does not write");
	}
	for (i = 0; i < first.record_count; i++) {
		rc = fm__dns_add_record(&w, &first.records[i]);
		if (rc == -ENOSPC)
			return 0;
		if (rc != 0)
			fz_fail("dns", "a parsed record does not write");
	}
	if (fm__dns_finish(&w, &len) != 0)
		return 0;
	if (fm__dns_parse(packet, len, &second) != 0)
		fz_fail("dns", "a written packet does not parse");
	if (second.question_count != first.question_count ||
	    second.record_count != first.record_count ||
	    second.id != first.id || second.flags != first.flags)
		fz_fail("dns", "round trip changed the counts or header");
	for (i = 0; i < first.question_count; i++) {
		const fm__dns_question *a = &first.questions[i];
		const fm__dns_question *b = &second.questions[i];
		if (strcmp(a->name, b->name) != 0 || a->type != b->type ||
		    a->class_ != b->class_)
			fz_fail("dns", "round trip changed a question");
	}
	for (i = 0; i < first.record_count; i++) {
		const fm__dns_record *a = &first.records[i];
		const fm__dns_record *b = &second.records[i];
		if (strcmp(a->name, b->name) != 0 || a->type != b->type ||
		    a->class_ != b->class_ || a->ttl != b->ttl ||
		    a->section != b->section || !rdata_equal(a, b))
			fz_fail("dns", "round trip changed a record");
	}
	return 0;
}
