/**
 * Opening a key-value bucket that replicas starting together may all try to
 * create (internal to the package).
 *
 * @module
 */
import { JetStreamApiError } from "@nats-io/jetstream";
import type { KV, Kvm, KvOptions } from "@nats-io/kv";

/**
 * JetStream's answers to a stream created while another creates it: its subjects overlap the
 * other's (10065), or its name is taken (10058).
 */
const CREATE_RACE_CODES: ReadonlySet<number> = new Set([10065, 10058]);

/**
 * Creates or opens the bucket. Replicas that start together race to create its stream: the
 * client looks the stream up, finds none and creates it, and the losers' creates are refused.
 * Their second try finds the stream and opens it; a stream that really overlaps is refused again.
 *
 * @param kvm The key-value client.
 * @param bucket The bucket's name.
 * @param options Its options, when it is created.
 * @returns The bucket.
 * @throws {JetStreamApiError} When JetStream refuses it twice, or once for another reason.
 */
export async function openBucket(
  kvm: Pick<Kvm, "create">,
  bucket: string,
  options: Partial<KvOptions>,
): Promise<KV> {
  try {
    return await kvm.create(bucket, options);
  } catch (error) {
    if (!(error instanceof JetStreamApiError) || !CREATE_RACE_CODES.has(error.code)) throw error;
    return await kvm.create(bucket, options);
  }
}
