/* A main() for the fuzz harnesses outside libFuzzer: runs the harness once
 * on every file of the given directories (or files), so that every build --
 * gcc, and the ASan/UBSan build of scripts/run-tests.sh -- replays the seed
 * corpus and every crash input ever found as a make check test.
 *
 *   replay_NAME [DIR|FILE]...
 *
 * Without arguments it replays $top_srcdir/fuzz/corpus/NAME (which must
 * hold at least one input: an empty corpus is a packaging error) and
 * $top_srcdir/fuzz/regressions/NAME (which may be absent). TAP output, one
 * test per input; an input that crashes the harness (a sanitizer report,
 * a harness check that aborts) ends the program, which the TAP driver
 * reports as an error. Each input is copied into a buffer of exactly its
 * size, so ASan sees a read past its end. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#ifndef FM_FUZZ_NAME
#error "FM_FUZZ_NAME must name the harness"
#endif

/* More inputs than this in one run is a mistake (the corpora are small). */
#define DRIVER_FILES_MAX 100000
/* Largest input replayed; libFuzzer's default -max_len is far below. */
#define DRIVER_INPUT_MAX_BYTES (16 * 1024 * 1024)

struct list {
	char **paths;
	size_t count, cap;
	int errors; /* a path that could not be listed */
};

static int list_add(struct list *l, const char *path)
{
	char *copy;

	if (l->count == DRIVER_FILES_MAX)
		return -E2BIG;
	if (l->count == l->cap) {
		size_t cap = l->cap == 0 ? 64 : l->cap * 2;
		char **grown = realloc(l->paths, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		l->paths = grown;
		l->cap = cap;
	}
	copy = strdup(path);
	if (copy == NULL)
		return -ENOMEM;
	l->paths[l->count++] = copy;
	return 0;
}

static int cmp_path(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds path (a file) or the regular files of path (a directory, not
 * recursive, dot files skipped) in name order. Returns how many were
 * added, or a negative errno. */
static int add_path(struct list *l, const char *path)
{
	struct stat st;
	struct dirent *e;
	size_t first = l->count;
	DIR *dir;
	int rc = 0;

	if (stat(path, &st) != 0)
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		rc = list_add(l, path);
		return rc < 0 ? rc : 1;
	}
	dir = opendir(path);
	if (dir == NULL)
		return -errno;
	while ((e = readdir(dir)) != NULL) {
		char full[4096];
		if (e->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(full, sizeof(full), "%s/%s", path,
		                     e->d_name) >= sizeof(full)) {
			rc = -ENAMETOOLONG;
			break;
		}
		if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		rc = list_add(l, full);
		if (rc < 0)
			break;
	}
	closedir(dir);
	if (rc < 0)
		return rc;
	qsort(l->paths + first, l->count - first, sizeof(char *), cmp_path);
	return (int)(l->count - first);
}

/* Reads a whole file into a buffer of exactly its size (NULL for an empty
 * one). 0 or a negative errno. */
static int read_input(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;
	int rc = 0;

	*out = NULL;
	*len = 0;
	if (f == NULL)
		return -errno;
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		rc = -EIO;
		goto cleanup;
	}
	if (size > DRIVER_INPUT_MAX_BYTES) {
		rc = -EFBIG;
		goto cleanup;
	}
	if (size > 0) {
		buf = malloc((size_t)size);
		if (buf == NULL) {
			rc = -ENOMEM;
			goto cleanup;
		}
		if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
			free(buf);
			buf = NULL;
			rc = -EIO;
			goto cleanup;
		}
	}
	*out = buf;
	*len = (size_t)size;
cleanup:
	fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	struct list l = {NULL, 0, 0, 0};
	char corpus[4096], regress[4096];
	const char *srcdir = getenv("top_srcdir");
	size_t i, tests;
	int failed = 0;
	int corpus_empty = 0;
	int rc;

	if (argc > 1) {
		for (i = 1; i < (size_t)argc; i++) {
			rc = add_path(&l, argv[i]);
			if (rc < 0) {
				fprintf(stderr, "replay_%s: %s: %s\n",
				        FM_FUZZ_NAME, argv[i], strerror(-rc));
				l.errors++;
			}
		}
	} else {
		if (srcdir == NULL || srcdir[0] == '\0')
			srcdir = ".";
		snprintf(corpus, sizeof(corpus), "%s/fuzz/corpus/%s", srcdir,
		         FM_FUZZ_NAME);
		snprintf(regress, sizeof(regress), "%s/fuzz/regressions/%s",
		         srcdir, FM_FUZZ_NAME);
		rc = add_path(&l, corpus);
		if (rc <= 0) {
			fprintf(stderr, "replay_%s: %s: %s\n", FM_FUZZ_NAME,
			        corpus,
			        rc < 0 ? strerror(-rc) : "no seed inputs");
			corpus_empty = 1;
		}
		rc = add_path(&l, regress);
		if (rc < 0 && rc != -ENOENT) {
			fprintf(stderr, "replay_%s: %s: %s\n", FM_FUZZ_NAME,
			        regress, strerror(-rc));
			l.errors++;
		}
	}
	tests = l.count + (size_t)corpus_empty + (size_t)l.errors;
	printf("1..%zu\n", tests);
	fflush(stdout);
	tests = 0;
	if (corpus_empty) {
		printf("not ok %zu - fuzz/corpus/%s holds no input\n", ++tests,
		       FM_FUZZ_NAME);
		failed++;
	}
	for (i = 0; i < (size_t)l.errors; i++) {
		printf("not ok %zu - a path could not be read (see stderr)\n",
		       ++tests);
		failed++;
	}
	for (i = 0; i < l.count; i++) {
		uint8_t *buf;
		size_t len;
		const char *shown = l.paths[i];
		if (srcdir != NULL &&
		    strncmp(shown, srcdir, strlen(srcdir)) == 0 &&
		    shown[strlen(srcdir)] == '/')
			shown += strlen(srcdir) + 1;
		rc = read_input(l.paths[i], &buf, &len);
		if (rc != 0) {
			printf("not ok %zu - %s: %s\n", ++tests, shown,
			       strerror(-rc));
			failed++;
			continue;
		}
		/* A crash must name its input: say it before running. */
		printf("# %s (%zu bytes)\n", shown, len);
		fflush(stdout);
		(void)LLVMFuzzerTestOneInput(buf, len);
		free(buf);
		printf("ok %zu - %s\n", ++tests, shown);
		fflush(stdout);
	}
	for (i = 0; i < l.count; i++)
		free(l.paths[i]);
	free(l.paths);
	return failed == 0 ? 0 : 1;
}
