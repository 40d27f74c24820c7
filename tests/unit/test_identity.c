/* Unit tests of the daemon's identity file: created once with mode 0600,
 * loaded back to the same node ID, refused when others can read it, and
 * never overwritten when it is damaged. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "daemon/keyfile.h"

struct fixture {
	char dir[64];
	char key[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/fedmesh-test-identity-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->key, sizeof(f->key), "%s/state/identity.key", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void make_state_dir(struct fixture *f)
{
	char state[96];
	char err[256];
	struct stat st;

	snprintf(state, sizeof(state), "%s/state", f->dir);
	assert_int_equal(fmd_mkdir_private(state, err, sizeof(err)), 0);
	assert_int_equal(stat(state, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_create_then_load(void **state)
{
	struct fixture *f = *state;
	fm_identity a, b;
	char err[256];
	struct stat st;
	int created = 0;

	make_state_dir(f);
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 0);
	assert_int_equal(created, 1);
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(fmd_identity_load_or_create(f->key, &b, &created, err,
	                                             sizeof(err)),
	                 0);
	assert_int_equal(created, 0);
	assert_memory_equal(a.node_id, b.node_id, FM_NODE_ID_BYTES);
	assert_memory_equal(a.secret_key, b.secret_key, FM_SECRET_KEY_BYTES);
	assert_int_equal(fm_identity_check(&b), 0);
}

static void test_two_identities_differ(void **state)
{
	struct fixture *f = *state;
	fm_identity a, b;
	char err[256];
	int created = 0;

	make_state_dir(f);
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 0);
	assert_int_equal(unlink(f->key), 0);
	assert_int_equal(fmd_identity_load_or_create(f->key, &b, &created, err,
	                                             sizeof(err)),
	                 0);
	assert_int_equal(created, 1);
	assert_memory_not_equal(a.node_id, b.node_id, FM_NODE_ID_BYTES);
}

static void test_refuses_readable_key(void **state)
{
	struct fixture *f = *state;
	fm_identity a;
	char err[512];
	int created = 0;

	make_state_dir(f);
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 0);
	assert_int_equal(chmod(f->key, 0644), 0);
	err[0] = '\0';
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 -EPERM);
	assert_non_null(strstr(err, "chmod 600"));
	assert_non_null(strstr(err, f->key));
	assert_int_equal(chmod(f->key, 0640), 0);
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 -EPERM);
	assert_int_equal(chmod(f->key, 0600), 0);
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 0);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_damaged_key_is_kept(void **state)
{
	struct fixture *f = *state;
	const char *damaged[] = {
	        "",
	        "fedmesh-identity-v1\n",
	        "fedmesh-identity-v2\ned25519-secret 00\n",
	        "fedmesh-identity-v1\ned25519-secret zz\n",
	};
	fm_identity a;
	char err[512];
	char back[128];
	int created = 0;
	size_t i;

	make_state_dir(f);
	for (i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
		FILE *fp;
		write_file(f->key, damaged[i]);
		assert_int_equal(fmd_identity_load_or_create(f->key, &a,
		                                             &created, err,
		                                             sizeof(err)),
		                 -EINVAL);
		assert_int_equal(created, 0);
		fp = fopen(f->key, "r");
		assert_non_null(fp);
		memset(back, 0, sizeof(back));
		assert_int_equal(fread(back, 1, sizeof(back) - 1, fp),
		                 strlen(damaged[i]));
		fclose(fp);
		assert_string_equal(back, damaged[i]);
	}
}

static void test_wrong_public_half_rejected(void **state)
{
	struct fixture *f = *state;
	fm_identity a;
	char err[512];
	char text[256];
	char hex[2 * FM_SECRET_KEY_BYTES + 1];
	int created = 0;

	make_state_dir(f);
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 0);
	/* flip a bit of the embedded public key: seed and key disagree */
	a.secret_key[FM_SEED_BYTES] ^= 1;
	fm_hex_encode(a.secret_key, FM_SECRET_KEY_BYTES, hex);
	snprintf(text, sizeof(text), "fedmesh-identity-v1\ned25519-secret %s\n",
	         hex);
	write_file(f->key, text);
	assert_int_equal(fmd_identity_load_or_create(f->key, &a, &created, err,
	                                             sizeof(err)),
	                 -EINVAL);
}

static void test_atomic_write_mode(void **state)
{
	struct fixture *f = *state;
	char path[128];
	char err[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/token", f->dir);
	write_file(path, "old");
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(
	        fmd_file_write_atomic(path, "new", 3, 0600, err, sizeof(err)),
	        0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 3);
	assert_int_equal(fmd_file_check_private(path, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_create_then_load, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_two_identities_differ,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_refuses_readable_key,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_damaged_key_is_kept, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_wrong_public_half_rejected,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_atomic_write_mode, setup,
	                                        teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
