/* Harness: the configuration file of fedmeshd (src/daemon/config.c: inih
 * over a string, every section and key, [jobs] and [service.NAME]
 * included). The input is the file's text (cut at a NUL, as the loader
 * refuses binary files). A file that loads and passes the check
 * fmd_config_resolve() applies after every source (each exec service has
 * a command) must print (--print-config) as a file that loads back, passes
 * that check, and prints the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/services.h"
#include "fuzz.h"

/* Far beyond any real configuration; keeps each run fast. */
#define INPUT_MAX (64 * 1024)

static char *print(const fmd_config *cfg, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (f == NULL)
		fz_fail("config", "open_memstream");
	fmd_config_print(cfg, f);
	if (fclose(f) != 0)
		fz_fail("config", "fclose");
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static fmd_config cfg, again;
	char err[512];
	char *text, *first, *second;
	size_t len1 = 0, len2 = 0;
	int rc;

	if (size > INPUT_MAX)
		return 0;
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	fmd_config_defaults(&cfg, "/tmp/fuzz-state", NULL);
	err[0] = '\0';
	rc = fmd_config_load_string(&cfg, text, "fuzz.conf", err, sizeof(err));
	free(text);
	if (rc == 0)
		rc = fmd_jobs_config_check(&cfg.jobs, err, sizeof(err));
	if (rc != 0) {
		if (err[0] == '\0')
			fz_fail("config", "an error without a message");
		return 0;
	}
	first = print(&cfg, &len1);
	fmd_config_defaults(&again, "/tmp/fuzz-state", NULL);
	if (fmd_config_load_string(&again, first, "printed.conf", err,
	                           sizeof(err)) != 0 ||
	    fmd_jobs_config_check(&again.jobs, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n%s\n", err, first);
		fz_fail("config", "the printed configuration does not load");
	}
	second = print(&again, &len2);
	if (len1 != len2 || memcmp(first, second, len1) != 0) {
		fprintf(stderr, "--- first\n%s--- second\n%s", first, second);
		fz_fail("config", "print(load(print(x))) != print(x)");
	}
	free(first);
	free(second);
	return 0;
}
