/* Jobs: the work a node hands to the mesh, and the work it runs for peers.
 * This is what the mesh is for, so it is the one module that touches
 * everything else: the router (router.h) chooses where an attempt runs, the
 * session layer carries the job messages (wire.h, docs/PROTOCOL.md "Jobs"),
 * the peer table supplies the candidates and takes the reputation events,
 * and fm_io runs the work (job_execute, job_kill) and reports it
 * (job_update).
 *
 * Submitting side (fm_node_job_submit): the job is copied, then each
 * attempt goes to the candidate the service's router picks among the
 * connected peers whose record offers the service and this node (when the
 * service is in its services or local_services: so with no peer the work
 * runs here). A failed, refused or silent attempt is retried on another
 * candidate with the same job ID; an attempt lost with its session fails
 * over at once and without asking the retry budget (it never ran, or its
 * result waits in the peer's cache); idempotent jobs may be hedged. Every
 * change goes out through fm_io.job_update.
 *
 * Executing side: a JOB_REQUEST for a service this node offers (never one of
 * its local_services) is reassembled within per-peer and total bounds, run
 * through fm_io.job_execute, and its result sent back in chunks. Requests
 * are deduplicated by (submitter node ID, job ID): a repeated request
 * attaches to the running job or is answered from the results kept for
 * FM_JOB_RESULT_KEEP_MS, so a retried job never runs twice on one node.
 *
 * What the driver sees (fm_io.job_execute, job_kill, and what it passes back
 * to fm_node_job_finished):
 * - this node's own jobs, run here: the job ID as submitted;
 * - peers' jobs: "<64 hex of the submitter's node ID>:<job ID>". Job IDs
 *   never contain ':' (fm__job_id_ok), so the two never collide, whoever
 *   submits what; the full node ID is used because a prefix could be ground
 *   by a peer to collide with another's.
 * The input handed to job_execute is valid during the call only.
 * The driver may call fm_node_job_finished() (and submit or cancel) from
 * inside any fm_io callback: such calls are queued and applied as soon as
 * the core returns from the call that made the callback. */
#ifndef FM_CORE_JOBS_H
#define FM_CORE_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"

struct fm__msg;

/* ---- parameters ------------------------------------------------------- */

/* Own jobs active at once; fm_node_job_submit() beyond is -ENOSPC (the
 * daemon's durable queue holds the rest). */
#define FM_JOBS_ACTIVE_MAX 4096
/* A spec with timeout_ms 0 gets the default; longer is -EINVAL. */
#define FM_JOB_TIMEOUT_DEFAULT_MS 60000ULL
#define FM_JOB_TIMEOUT_MAX_MS (24ULL * 60 * 60 * 1000)
/* A peer must answer a JOB_REQUEST (ACCEPT, RUNNING, REFUSE or RESULT)
 * within this, or the attempt timed out. */
#define FM_JOB_ANSWER_TIMEOUT_MS 5000
/* After this long without a word about a running attempt the submitter
 * asks (JOB_QUERY); no answer within FM_JOB_QUERY_TIMEOUT_MS and the
 * attempt timed out. A pull, so a long job costs one small message per
 * period and the executor keeps no timer per job. */
#define FM_JOB_QUERY_AFTER_MS 10000
#define FM_JOB_QUERY_TIMEOUT_MS 5000
/* The retry budget said no: ask again after this (the budget's window
 * moves in 1 s steps). */
#define FM_JOB_RETRY_WAIT_MS 250
/* One reputation success per this many successful jobs of a peer: the
 * counter is capped anyway, and each event is a write in the driver. */
#define FM_JOB_REP_SUCCESS_EVERY 16
/* Routers, one per service in use; an idle one is recycled beyond. */
#define FM_JOB_ROUTERS_MAX 64
/* Candidates are re-read from the peer table on every peer change and at
 * least this often (reputation scores drift). */
#define FM_JOB_ROUTER_SYNC_MS 1000
/* Peers' jobs being received or running here: in all, and per submitter;
 * input bytes being reassembled, in all and per submitter. Beyond any of
 * them a request is refused ("busy"). */
#define FM_JOB_INBOUND_MAX 1024
#define FM_JOB_INBOUND_PER_PEER_MAX 256
#define FM_JOB_INBOUND_BYTES_MAX (256ULL * 1024 * 1024)
#define FM_JOB_INBOUND_PEER_BYTES_MAX (64ULL * 1024 * 1024)
/* Finished peers' jobs are kept this long, this many, this many output
 * bytes at most, for deduplication and re-requests. Eviction takes the
 * oldest result the submitter acknowledged (JOB_ACK) among the
 * FM_JOB_EVICT_SCAN oldest, else the oldest. */
#define FM_JOB_RESULT_KEEP_MS (10ULL * 60 * 1000)
#define FM_JOB_RESULTS_KEPT 4096
#define FM_JOB_RESULTS_BYTES_MAX (256ULL * 1024 * 1024)
#define FM_JOB_EVICT_SCAN 64
/* Own jobs that ended while their local run was still being killed: their
 * IDs stay busy in the driver until it reports the end. */
#define FM_JOB_ZOMBIES_MAX 1024
/* "<64 hex>:<job ID>" */
#define FM_JOB_DRIVER_ID_MAX (2 * FM_NODE_ID_BYTES + 1 + FM_JOB_ID_MAX)

/* ---- the node's side (node.c, session.c) ------------------------------ */

/* Allocates node->jobs (small; tables grow on use). -EINVAL for a bad
 * local_services list, -ENOMEM. */
int fm__jobs_new(fm_node *node, const fm_node_config *cfg);
void fm__jobs_free(fm_node *node);
/* Timers: attempts, hedges, waits, overall deadlines, expiry of kept
 * results, and failover after a peer change. Returns the next deadline. */
uint64_t fm__jobs_tick(fm_node *node, uint64_t now_ms);
/* A job message arrived on open session `session`. 0, or -EBADMSG when it
 * breaks the protocol (the session layer ends the session: bad_message).
 * May end the session itself (a peer banned for failures). */
int fm__jobs_on_msg(fm_node *node, uint64_t now_ms, int session,
                    const struct fm__msg *m);
/* A session opened or closed, or a record changed: candidates are re-read
 * and attempts whose session is gone fail over, at the next tick. Only
 * marks; safe to call from anywhere. */
void fm__jobs_peers_changed(fm_node *node);

#endif
