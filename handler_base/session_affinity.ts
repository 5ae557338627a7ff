/**
 * Session affinity for a stream-of-messages service with several replicas:
 * every message of one session is handled by exactly one replica, the
 * owner, while replicas come and go.
 *
 * The design (the full reasoning is in `docs/STT.md`):
 * - Every replica subscribes to the session subjects **without** a queue
 *   group, so each replica sees every message of every session, in the
 *   publisher's order. A queue group would scatter one session's chunks.
 * - Ownership is a claim in a JetStream key-value bucket: the first replica
 *   to see a session creates the key `<session>` with its replica id
 *   (`create` is atomic: exactly one replica wins). The others learn the
 *   owner from the failed create and drop that session's messages; they look
 *   again after `recheckMs`.
 * - Claims live `ttlMs` (the bucket's TTL); the owner rewrites its claims
 *   every `ttlMs / 3` with a compare-and-set on the revision it holds. A
 *   replica that dies stops refreshing, its claims expire, and the next
 *   message of such a session is claimed by a live replica (after at most
 *   `ttlMs + recheckMs`). A replica that finds its claim taken (it was paused
 *   longer than the TTL) gives the session up and is told through `onLost`.
 * - Balancing: each replica also keeps a membership key (`m.<replica>`,
 *   refreshed with its claims). For a new session every replica ranks the
 *   members by rendezvous hashing (highest hash of session and member
 *   first); the first ranked claims at once, the others wait
 *   `claimStaggerMs` per rank, so sessions spread evenly and a missing
 *   member only delays the claim.
 * - {@linkcode SessionAffinity.admit} runs the work of one message only on
 *   the owner and keeps the arrival order even while a claim is in flight.
 * - When the bucket cannot be reached (no JetStream), a replica takes the
 *   session (fail open: right for one replica) and claims it on its next
 *   refresh; if another replica holds it by then, the session is given up.
 *
 * Requires `--allow-net` to NATS and a server with JetStream.
 *
 * @example Two replicas, one owner
 * ```ts ignore
 * import { createSessionAffinity } from "@homelab/handler-base/session-affinity";
 *
 * await using a = await createSessionAffinity(ncA, { bucket: "stt_sessions" });
 * await using b = await createSessionAffinity(ncB, { bucket: "stt_sessions" });
 * const ran = await Promise.all([a.admit("s1", () => "a"), b.admit("s1", () => "b")]);
 * console.log(ran.filter(Boolean).length); // 1
 * ```
 *
 * @module
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { openBucket } from "./_bucket.ts";
import { delay } from "./async.ts";
import type { Logger } from "./log.ts";
import type { NatsConnection } from "./natsutil.ts";

/** Options of {@linkcode createSessionAffinity}. */
export interface SessionAffinityOptions {
  /** The key-value bucket of the claims (created when missing). */
  bucket: string;
  /**
   * This replica's id, stored in its claims.
   *
   * @default a random UUID
   */
  replicaId?: string;
  /**
   * How long a claim lives without a refresh, in milliseconds (the bucket's
   * TTL): the longest a dead replica's sessions stay unowned.
   *
   * @default 10000
   */
  ttlMs?: number;
  /**
   * How many servers hold the bucket (its stream's replicas), as
   * `JETSTREAM_REPLICAS` does for the streams: 3 on a three-node cluster, so
   * that the claims survive a node. A bucket made with fewer is raised to it
   * (a stream update; the user needs `$JS.API.STREAM.UPDATE.KV_<bucket>`),
   * or a warning is logged when that is refused.
   *
   * @default 1
   */
  replicas?: number;
  /**
   * How long a replica trusts that another one owns a session before it
   * reads the claim again, in milliseconds.
   *
   * @default half of `ttlMs`
   */
  recheckMs?: number;
  /**
   * Balancing: the replicas rank each new session by rendezvous hashing over
   * the live members; the first claims at once, the n-th waits n times this
   * long first (in case the ones before it are gone). The session's messages
   * wait, in order, meanwhile.
   *
   * @default 100
   */
  claimStaggerMs?: number;
  /**
   * Told when this replica loses a session it held (its claim expired and
   * another replica took it); the caller drops the session's state.
   *
   * @default nothing
   */
  onLost?(sessionId: string): void;
  /**
   * The logger.
   *
   * @default none
   */
  logger?: Logger;
  /**
   * The clock, in milliseconds.
   *
   * @default Date.now
   */
  now?: () => number;
}

/** Options of {@linkcode SessionAffinity.admit}. */
export interface AdmitOptions {
  /**
   * The message starts a session: it takes over a session that ended.
   *
   * @default false
   */
  reopen?: boolean;
}

/** Options of {@linkcode SessionAffinity.release}. */
export interface ReleaseOptions {
  /**
   * The session ended (as opposed to being handed over).
   *
   * @default true
   */
  ended?: boolean;
}

/** Routes each session to one replica; see the module doc. */
export interface SessionAffinity extends AsyncDisposable {
  /** This replica's id. */
  readonly replicaId: string;
  /**
   * Runs `work` if this replica owns the session, claiming it when nobody
   * does. Works of one session run in call order, after the claim settles.
   *
   * @param sessionId The session id.
   * @param work The message's work.
   * @param options `reopen: true` for a message that starts a session: it may
   * take over a session that ended (see {@linkcode SessionAffinity.release}).
   * @returns The work's result, or `undefined` when another replica owns the session.
   */
  admit<T>(
    sessionId: string,
    work: () => T | Promise<T>,
    options?: AdmitOptions,
  ): Promise<T | undefined>;
  /**
   * Gives a session up, if this replica holds it. A session that `ended`
   * keeps an "ended" claim until the TTL, so that its late messages, which
   * other replicas may still be deciding about, are dropped rather than
   * opening it again elsewhere; only a `reopen` message takes it over. A
   * session handed over (the replica stops) is deleted, so that its next
   * message opens it on a live replica at once.
   *
   * @param sessionId The session id.
   * @param options Whether the session ended.
   */
  release(sessionId: string, options?: ReleaseOptions): Promise<void>;
  /** The sessions this replica owns. */
  owned(): string[];
  /** The replicas this one saw at its last refresh of the membership, itself included. */
  members(): readonly string[];
  /** Refreshes every claim now (a timer does it every `ttlMs / 3`). */
  refresh(): Promise<void>;
}

type Decision =
  | { kind: "mine"; revision: number; gate: Promise<boolean> }
  | { kind: "other"; owner: string; checkedAt: number }
  | { kind: "pending"; gate: Promise<boolean> };

const MINE: Promise<boolean> = Promise.resolve(true);
const ENDED_PREFIX = "ended:";
const ENDED = "(ended)";

/** FNV-1a over "session/member": the rendezvous hashing score. */
function rendezvousScore(sessionId: string, member: string): number {
  let hash = 0x811c9dc5;
  const text = `${sessionId}/${member}`;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  // A final mix, so that close inputs spread over the whole range.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b) >>> 0;
  hash ^= hash >>> 13;
  return hash >>> 0;
}

/**
 * The key of a session in the bucket: the id itself when it is a valid key
 * token, else `x-` and its UTF-8 bytes in hex.
 *
 * @param sessionId The session id.
 * @returns The key.
 *
 * @example
 * ```ts
 * import { sessionKey } from "@homelab/handler-base/session-affinity";
 *
 * console.log(sessionKey("abc-1"), sessionKey("a b")); // abc-1 x-612062
 * ```
 */
export function sessionKey(sessionId: string): string {
  if (/^[A-Za-z0-9_=][-A-Za-z0-9_=]*$/.test(sessionId) && !sessionId.startsWith("x-")) {
    return sessionId;
  }
  const hex = [...new TextEncoder().encode(sessionId)]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  return `x-${hex}`;
}

/**
 * Opens (or creates) the claims bucket and starts refreshing this replica's
 * claims.
 *
 * @param nc The connection.
 * @param options The bucket, TTL and hooks.
 * @returns The affinity; dispose it to release every claim.
 * @throws {Error} When the bucket cannot be created or opened (no JetStream).
 *
 * @example
 * ```ts ignore
 * import { createSessionAffinity } from "@homelab/handler-base/session-affinity";
 *
 * const affinity = await createSessionAffinity(nc, { bucket: "stt_sessions", ttlMs: 6000 });
 * await affinity.admit("session-1", () => console.log("mine"));
 * ```
 */
export async function createSessionAffinity(
  nc: NatsConnection,
  options: SessionAffinityOptions,
): Promise<SessionAffinity> {
  const ttlMs = options.ttlMs ?? 10_000;
  if (!Number.isInteger(ttlMs) || ttlMs < 300) {
    throw new RangeError(`Cannot create session affinity: ttlMs ${ttlMs} is below 300`);
  }
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new RangeError(`Cannot create session affinity: replicas ${replicas} is not 1 to 5`);
  }
  // No JetStream account check first (one round trip at start-up): without JetStream, opening
  // the bucket's stream fails as well.
  const kv = await openBucket(new Kvm(jetstream(nc, { checkAPI: false })), options.bucket, {
    ttl: ttlMs,
    history: 1,
    replicas,
  });
  await raiseReplicas(nc, options.bucket, replicas, options.logger);
  const affinity = new KvSessionAffinity(kv, { ...options, ttlMs });
  await affinity.announce();
  return affinity;
}

/** Raises an existing bucket's stream to `replicas` (a bucket made before on fewer servers). */
async function raiseReplicas(
  nc: NatsConnection,
  bucket: string,
  replicas: number,
  logger: Logger | undefined,
): Promise<void> {
  // Every stream has at least one: nothing to look up (a round trip before ready).
  if (replicas <= 1) return;
  const stream = `KV_${bucket}`;
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const info = await jsm.streams.info(stream);
  const current = info.config.num_replicas ?? 1;
  if (current >= replicas) return;
  try {
    await jsm.streams.update(stream, { ...info.config, num_replicas: replicas });
    logger?.info("Session-affinity bucket raised to more replicas", {
      bucket,
      from: current,
      to: replicas,
    });
  } catch (error) {
    logger?.warn("Cannot raise the session-affinity bucket's replicas: it keeps fewer", {
      bucket,
      replicas: current,
      wanted: replicas,
      error: error instanceof Error ? error.message : String(error),
    });
  }
}

class KvSessionAffinity implements SessionAffinity {
  readonly replicaId: string;
  readonly #kv: KV;
  readonly #decisions = new Map<string, Decision>();
  readonly #recheckMs: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #options: SessionAffinityOptions;
  readonly #timer: ReturnType<typeof setInterval>;
  #refreshing: Promise<void> | undefined;
  #members: string[] = [];
  #closed = false;

  constructor(kv: KV, options: SessionAffinityOptions & { ttlMs: number }) {
    this.#kv = kv;
    this.#options = options;
    this.replicaId = options.replicaId ?? crypto.randomUUID();
    this.#ttlMs = options.ttlMs;
    this.#recheckMs = options.recheckMs ?? Math.floor(options.ttlMs / 2);
    this.#now = options.now ?? Date.now;
    this.#timer = setInterval(
      () => void this.refresh(),
      Math.max(100, Math.floor(this.#ttlMs / 3)),
    );
  }

  admit<T>(
    sessionId: string,
    work: () => T | Promise<T>,
    options: AdmitOptions = {},
  ): Promise<T | undefined> {
    let decision = this.#decisions.get(sessionId);
    if (decision?.kind === "other") {
      const fresh = this.#now() - decision.checkedAt < this.#recheckMs;
      if (fresh && !(options.reopen && decision.owner === ENDED)) return Promise.resolve(undefined);
      decision = undefined;
    }
    if (!decision) {
      decision = { kind: "pending", gate: this.#decide(sessionId, options.reopen ?? false) };
      this.#decisions.set(sessionId, decision);
    }
    return decision.gate.then((mine) => (mine ? work() : undefined));
  }

  async release(sessionId: string, options: ReleaseOptions = {}): Promise<void> {
    const decision = this.#decisions.get(sessionId);
    if (decision?.kind !== "mine") return;
    this.#decisions.delete(sessionId);
    if (decision.revision === 0) return;
    const key = sessionKey(sessionId);
    try {
      if (options.ended ?? true) {
        await this.#kv.update(key, `${ENDED_PREFIX}${this.replicaId}`, decision.revision);
      } else {
        await this.#kv.delete(key, { previousSeq: decision.revision });
      }
    } catch (error) {
      // Taken over or already expired: either way it is not ours any more.
      this.#options.logger?.debug("Session claim not released", { session_id: sessionId, error });
    }
  }

  members(): readonly string[] {
    return this.#members;
  }

  owned(): string[] {
    return [...this.#decisions].filter(([, d]) => d.kind === "mine").map(([id]) => id);
  }

  refresh(): Promise<void> {
    this.#refreshing ??= this.#refreshAll().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#refreshing;
    await Promise.all(this.owned().map((id) => this.release(id, { ended: false })));
    await this.#kv.delete(`m.${this.replicaId}`).catch(() => {});
  }

  async #decide(sessionId: string, reopen: boolean): Promise<boolean> {
    const key = sessionKey(sessionId);
    const wait = this.#rank(sessionId) * (this.#options.claimStaggerMs ?? 100);
    if (wait > 0) await delay(wait);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const revision = await this.#kv.create(key, this.replicaId);
        this.#mine(sessionId, revision);
        return true;
      } catch (createError) {
        let entry;
        try {
          entry = await this.#kv.get(key);
        } catch (error) {
          return this.#failOpen(sessionId, error);
        }
        if (entry && entry.operation === "PUT") {
          const owner = entry.string();
          if (owner.startsWith(ENDED_PREFIX)) {
            if (reopen) {
              try {
                this.#mine(sessionId, await this.#kv.update(key, this.replicaId, entry.revision));
                return true;
              } catch {
                continue; // another replica reopened it first: look again
              }
            }
            this.#decisions.set(sessionId, { kind: "other", owner: ENDED, checkedAt: this.#now() });
            return false;
          }
          if (owner === this.replicaId) {
            this.#mine(sessionId, entry.revision);
            return true;
          }
          this.#decisions.set(sessionId, { kind: "other", owner, checkedAt: this.#now() });
          return false;
        }
        // Deleted or expired between the create and the read: try again once.
        if (attempt === 1) return this.#failOpen(sessionId, createError);
      }
    }
    return false;
  }

  /** This replica's place among the members for a session (0 = first). */
  #rank(sessionId: string): number {
    const mine = rendezvousScore(sessionId, this.replicaId);
    let rank = 0;
    for (const member of this.#members) {
      if (member !== this.replicaId && rendezvousScore(sessionId, member) > mine) rank++;
    }
    return rank;
  }

  /** Writes this replica's membership key and reads the others'. */
  async announce(): Promise<void> {
    // The write and the listing go out together (a round trip less at start-up, where
    // readiness waits for this); the listing may miss this replica's own key, which counts anyway.
    const [written, listed] = await Promise.allSettled([
      this.#kv.put(`m.${this.replicaId}`, this.replicaId),
      this.#kv.keys("m.*"),
    ]);
    try {
      if (listed.status === "rejected") throw listed.reason;
      const members = new Set<string>([this.replicaId]);
      for await (const key of listed.value) members.add(key.slice(2));
      this.#members = [...members];
      if (written.status === "rejected") throw written.reason;
    } catch (error) {
      this.#options.logger?.warn("Cannot refresh the replica membership", { error });
    }
  }

  #mine(sessionId: string, revision: number): void {
    this.#decisions.set(sessionId, { kind: "mine", revision, gate: MINE });
  }

  #failOpen(sessionId: string, error: unknown): boolean {
    this.#options.logger?.warn("Cannot claim session: handling it here unclaimed", {
      session_id: sessionId,
      error,
    });
    this.#mine(sessionId, 0);
    return true;
  }

  async #refreshAll(): Promise<void> {
    const now = this.#now();
    const work: Promise<void>[] = [];
    for (const [sessionId, decision] of this.#decisions) {
      if (decision.kind === "mine") work.push(this.#refreshOne(sessionId, decision.revision));
      // Forget other replicas' sessions nobody sent anything for in a while.
      if (decision.kind === "other" && now - decision.checkedAt > 4 * this.#recheckMs) {
        this.#decisions.delete(sessionId);
      }
    }
    work.push(this.announce());
    await Promise.all(work);
  }

  async #refreshOne(sessionId: string, revision: number): Promise<void> {
    const key = sessionKey(sessionId);
    try {
      const next = revision === 0
        ? await this.#kv.create(key, this.replicaId)
        : await this.#kv.update(key, this.replicaId, revision);
      if (this.#decisions.get(sessionId)?.kind === "mine") this.#mine(sessionId, next);
      return;
    } catch {
      // The revision moved: expired (nobody else claimed it), or taken.
    }
    if (this.#decisions.get(sessionId)?.kind !== "mine") return;
    try {
      const entry = await this.#kv.get(key);
      if (entry && entry.operation === "PUT" && entry.string() !== this.replicaId) {
        // Taken by another replica, or ended and reopened elsewhere.
        this.#lose(sessionId, entry.string());
        return;
      }
      if (entry && entry.operation === "PUT") {
        this.#mine(sessionId, entry.revision);
        return;
      }
      // Expired and free: claim it again.
      this.#mine(sessionId, await this.#kv.create(key, this.replicaId));
    } catch (error) {
      this.#options.logger?.warn("Cannot refresh session claim", { session_id: sessionId, error });
    }
  }

  #lose(sessionId: string, owner: string): void {
    this.#decisions.set(sessionId, { kind: "other", owner, checkedAt: this.#now() });
    this.#options.logger?.warn("Session claim taken by another replica", {
      session_id: sessionId,
      owner,
    });
    this.#options.onLost?.(sessionId);
  }
}
