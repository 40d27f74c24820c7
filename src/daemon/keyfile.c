/* Secret files of the state directory. A stolen identity key is a stolen
 * node, so these files are created 0600 in a 0700 directory, written
 * atomically (a crash never leaves half a key), and refused at start when
 * others can read them, the way ssh refuses a loose private key. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "keyfile.h"

#define IDENTITY_MAGIC "fedmesh-identity-v1"
#define IDENTITY_SECRET_TAG "ed25519-secret "
/* The identity file is tiny; anything bigger is not ours. */
#define IDENTITY_FILE_MAX_BYTES 512
/* 64 hex characters and a newline; some slack for a CRLF editor. */
#define FEDERATION_KEY_FILE_MAX_BYTES 128

int fmd_mkdir_private(const char *dir, char *err, size_t err_len)
{
	struct stat st;
	char path[FMD_PATH_MAX];
	size_t len = strlen(dir);
	size_t i;

	if (len == 0 || len >= sizeof(path)) {
		snprintf(err, err_len, "invalid directory path");
		return -EINVAL;
	}
	memcpy(path, dir, len + 1);
	/* Parents get the usual 0755 (via umask) like mkdir -p; the state
	 * directory itself is 0700. */
	for (i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, i == len ? 0700 : 0755) != 0 &&
		    errno != EEXIST) {
			snprintf(err, err_len, "cannot create %s: %s", path,
			         strerror(errno));
			return -errno;
		}
		path[i] = i == len ? '\0' : '/';
	}
	/* It may have existed: someone else's directory, or one others may
	 * write to, could have its files swapped under us; one they may
	 * merely read is tightened (the files in it are 0600 anyway). */
	if (lstat(dir, &st) != 0) {
		snprintf(err, err_len, "cannot stat %s: %s", dir,
		         strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 022) != 0) {
		snprintf(err, err_len,
		         "%s is not a directory of this user that only it may "
		         "write to (mode %03o); fix with: chmod 700 %s",
		         dir, (unsigned)(st.st_mode & 07777), dir);
		return -EPERM;
	}
	if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0) {
		snprintf(err, err_len, "cannot chmod 700 %s: %s", dir,
		         strerror(errno));
		return -errno;
	}
	return 0;
}

int fmd_file_write_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, char *err, size_t err_len)
{
	char tmp[FMD_PATH_MAX + 16];
	int fd = -1;
	int rc = 0;
	size_t off = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, err_len, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	          (mode_t)mode);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot create %s: %s", tmp,
		         strerror(errno));
		goto cleanup;
	}
	/* The umask could have widened nothing, but an existing tmp file
	 * could carry other bits: set them explicitly. */
	if (fchmod(fd, (mode_t)mode) != 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot chmod %s: %s", tmp,
		         strerror(errno));
		goto cleanup;
	}
	while (off < len) {
		ssize_t n = write(fd, (const char *)data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, err_len, "cannot write %s: %s", tmp,
			         strerror(errno));
			goto cleanup;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot sync %s: %s", tmp,
		         strerror(errno));
		goto cleanup;
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = -errno;
		snprintf(err, err_len, "cannot close %s: %s", tmp,
		         strerror(errno));
		goto cleanup;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot rename %s to %s: %s", tmp, path,
		         strerror(errno));
		goto cleanup;
	}
cleanup:
	if (fd >= 0)
		close(fd);
	if (rc != 0)
		unlink(tmp);
	return rc;
}

int fmd_file_check_private(const char *path, char *err, size_t err_len)
{
	struct stat st;

	if (lstat(path, &st) != 0) {
		int e = errno;
		snprintf(err, err_len, "cannot stat %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s is not a regular file", path);
		return -EPERM;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, err_len,
		         "%s is owned by uid %u, not by this user (uid %u)",
		         path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, err_len,
		         "permissions %04o for %s are too open: it must not be "
		         "accessible by others. Fix with: chmod 600 %s",
		         (unsigned)(st.st_mode & 07777), path, path);
		return -EPERM;
	}
	return 0;
}

/* Reads a whole small file; -EFBIG beyond max. */
static int read_small_file(const char *path, char *buf, size_t max,
                           size_t *len_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	size_t len = 0;
	int rc = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, buf + len, max - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto cleanup;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == max) {
			rc = -EFBIG;
			goto cleanup;
		}
	}
	buf[len] = '\0';
	*len_out = len;
cleanup:
	close(fd);
	return rc;
}

static int parse_identity(char *text, fm_identity *out)
{
	char *line2;
	char *end;

	line2 = strchr(text, '\n');
	if (line2 == NULL)
		return -EINVAL;
	*line2++ = '\0';
	if (strcmp(text, IDENTITY_MAGIC) != 0)
		return -EINVAL;
	if (strncmp(line2, IDENTITY_SECRET_TAG, strlen(IDENTITY_SECRET_TAG)) !=
	    0)
		return -EINVAL;
	line2 += strlen(IDENTITY_SECRET_TAG);
	end = strchr(line2, '\n');
	if (end != NULL) {
		if (end[1] != '\0')
			return -EINVAL;
		*end = '\0';
	}
	if (fm_hex_decode(line2, out->secret_key, FM_SECRET_KEY_BYTES) != 0)
		return -EINVAL;
	/* Ed25519 secret keys in libsodium end with the public key. */
	memcpy(out->public_key, out->secret_key + FM_SEED_BYTES,
	       FM_PUBLIC_KEY_BYTES);
	return fm_identity_check(out);
}

int fmd_identity_load_or_create(const char *path, fm_identity *out,
                                int *created, char *err, size_t err_len)
{
	char text[IDENTITY_FILE_MAX_BYTES + 1];
	char hex[2 * FM_SECRET_KEY_BYTES + 1];
	uint8_t seed[FM_SEED_BYTES];
	size_t len = 0;
	int rc;

	*created = 0;
	rc = read_small_file(path, text, IDENTITY_FILE_MAX_BYTES, &len);
	if (rc == 0) {
		rc = fmd_file_check_private(path, err, err_len);
		if (rc != 0)
			goto cleanup;
		rc = parse_identity(text, out);
		if (rc != 0)
			snprintf(err, err_len,
			         "%s is not a valid fedmesh identity file; "
			         "refusing to overwrite it (move it away to "
			         "create a new identity)",
			         path);
		goto cleanup;
	}
	if (rc != -ENOENT) {
		snprintf(err, err_len, "cannot read %s: %s", path,
		         rc == -EFBIG ? "file too large" : strerror(-rc));
		goto cleanup;
	}
	randombytes_buf(seed, sizeof(seed));
	rc = fm_identity_from_seed(seed, out);
	if (rc != 0) {
		snprintf(err, err_len, "cannot derive identity");
		goto cleanup;
	}
	fm_hex_encode(out->secret_key, FM_SECRET_KEY_BYTES, hex);
	len = (size_t)snprintf(text, sizeof(text), "%s\n%s%s\n", IDENTITY_MAGIC,
	                       IDENTITY_SECRET_TAG, hex);
	rc = fmd_file_write_atomic(path, text, len, 0600, err, err_len);
	if (rc == 0)
		*created = 1;
cleanup:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(hex, sizeof(hex));
	sodium_memzero(text, sizeof(text));
	if (rc != 0)
		fm_identity_wipe(out);
	return rc;
}

int fmd_federation_key_write(const char *path,
                             const uint8_t key[FM_FEDERATION_KEY_BYTES],
                             char *err, size_t err_len)
{
	char text[2 * FM_FEDERATION_KEY_BYTES + 2];
	int rc;

	fm_hex_encode(key, FM_FEDERATION_KEY_BYTES, text);
	text[2 * FM_FEDERATION_KEY_BYTES] = '\n';
	text[2 * FM_FEDERATION_KEY_BYTES + 1] = '\0';
	rc = fmd_file_write_atomic(path, text, 2 * FM_FEDERATION_KEY_BYTES + 1,
	                           0600, err, err_len);
	sodium_memzero(text, sizeof(text));
	return rc;
}

/* Exactly 64 hex characters, then optionally one line ending. */
static int parse_federation_key(char *text, size_t len,
                                uint8_t key[FM_FEDERATION_KEY_BYTES])
{
	size_t hex_len = 2 * FM_FEDERATION_KEY_BYTES;

	if (len > hex_len && text[len - 1] == '\n')
		len--;
	if (len > hex_len && text[len - 1] == '\r')
		len--;
	if (len != hex_len)
		return -EINVAL;
	text[hex_len] = '\0';
	return fm_hex_decode(text, key, FM_FEDERATION_KEY_BYTES);
}

int fmd_federation_key_load_or_create(const char *path,
                                      uint8_t key[FM_FEDERATION_KEY_BYTES],
                                      int *created, char *err, size_t err_len)
{
	char text[FEDERATION_KEY_FILE_MAX_BYTES + 1];
	size_t len = 0;
	int rc;

	*created = 0;
	rc = read_small_file(path, text, FEDERATION_KEY_FILE_MAX_BYTES, &len);
	if (rc == 0) {
		rc = fmd_file_check_private(path, err, err_len);
		if (rc != 0)
			goto cleanup;
		rc = parse_federation_key(text, len, key);
		if (rc != 0)
			snprintf(
			        err, err_len,
			        "%s is not a valid federation key file (64 hex "
			        "characters); refusing to overwrite it. Move "
			        "it "
			        "away to start a new federation of one, or "
			        "join "
			        "one again with --join INVITE",
			        path);
		goto cleanup;
	}
	if (rc != -ENOENT) {
		snprintf(err, err_len, "cannot read %s: %s", path,
		         rc == -EFBIG ? "file too large" : strerror(-rc));
		goto cleanup;
	}
	/* A federation of one: nobody else holds this key until an invite
	 * carries it. */
	randombytes_buf(key, FM_FEDERATION_KEY_BYTES);
	rc = fmd_federation_key_write(path, key, err, err_len);
	if (rc == 0)
		*created = 1;
cleanup:
	sodium_memzero(text, sizeof(text));
	if (rc != 0)
		sodium_memzero(key, FM_FEDERATION_KEY_BYTES);
	return rc;
}
