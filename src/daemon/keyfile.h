/* Secret files in the state directory (identity key, API token, federation
 * key): written atomically with mode 0600, and refused at load
 * when group or others can read them, as ssh refuses a private key. */
#ifndef FMD_KEYFILE_H
#define FMD_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"

#define FMD_IDENTITY_FILE "identity.key"
#define FMD_TOKEN_FILE "api.token"
#define FMD_ADDR_FILE "api.addr"
#define FMD_FEDERATION_KEY_FILE "federation.key"

/* Creates dir (and parents) with mode 0700 when missing. */
int fmd_mkdir_private(const char *dir, char *err, size_t err_len);

/* Writes data to path via a temporary file + fsync + rename, mode `mode`. */
int fmd_file_write_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, char *err, size_t err_len);

/* 0 when path is a regular file, owned by us, with no group/other access
 * bits; -EPERM with a message naming the fix (chmod 600) otherwise. */
int fmd_file_check_private(const char *path, char *err, size_t err_len);

/* Loads the identity from path, or when it does not exist creates one from
 * a fresh seed (libsodium randombytes) and writes it 0600. *created is set to
 * 1 when a new identity was made. The file holds a versioned text format:
 *   fedmesh-identity-v1
 *   ed25519-secret <128 hex>
 * Refuses (-EPERM) a file readable by others and (-EINVAL) a malformed or
 * inconsistent one, never overwriting it. */
int fmd_identity_load_or_create(const char *path, fm_identity *out,
                                int *created, char *err, size_t err_len);

/* Loads the federation key (64 hex characters and a newline) from path,
 * or when it does not exist creates a fresh random one and writes it 0600:
 * every node starts as a federation of one. *created is set to 1 when a new
 * key was made. Like the identity, a file readable by others is refused
 * (-EPERM) and a malformed one (-EINVAL) is never overwritten. */
int fmd_federation_key_load_or_create(const char *path,
                                      uint8_t key[FM_FEDERATION_KEY_BYTES],
                                      int *created, char *err, size_t err_len);
/* Replaces the federation key file atomically (joining a federation). */
int fmd_federation_key_write(const char *path,
                             const uint8_t key[FM_FEDERATION_KEY_BYTES],
                             char *err, size_t err_len);

#endif
