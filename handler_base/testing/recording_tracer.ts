/**
 * A tracer provider for tests that records each span's name, parent,
 * attributes, events and end, so a test can check what a handler traced
 * without an exporter (`createTelemetry({ tracer: provider.getTracer(...) })`
 * or the `telemetry` option of `startTestService`).
 *
 * Needs no permission.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
 * import { recordingTracerProvider } from "@homelab/handler-base/testing";
 *
 * const provider = recordingTracerProvider();
 * const tracer = provider.getTracer("demo");
 * const parent = tracer.startSpan("process demo");
 * const child = tracer.startSpan("backend", {}, trace.setSpan(ROOT_CONTEXT, parent));
 * child.setAttribute("demo.size", 3);
 * child.end();
 * await provider.ended((span) => span.name === "backend");
 * assert.deepEqual(provider.spans.map((s) => [s.name, s.parent]), [
 *   ["process demo", undefined],
 *   ["backend", "process demo"],
 * ]);
 * ```
 *
 * @module
 */
import {
  type Attributes,
  type AttributeValue,
  type Context,
  INVALID_SPAN_CONTEXT,
  type Span,
  trace,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";

/** One span as the provider recorded it. */
export interface RecordedSpan {
  /** The span's name. */
  readonly name: string;
  /** The name of its parent span, when it had one. */
  readonly parent: string | undefined;
  /** Its attributes, as set. */
  readonly attributes: Record<string, AttributeValue | undefined>;
  /** Its events, in order. */
  readonly events: { name: string; attributes?: Attributes }[];
  /** Whether it has ended. */
  ended: boolean;
}

/** A {@linkcode TracerProvider} that records its spans. */
export interface RecordingTracerProvider extends TracerProvider {
  /** Every span started, in order. */
  readonly spans: RecordedSpan[];
  /**
   * Waits until a matching span has ended.
   *
   * @param match Which span.
   * @param timeoutMs How long to wait before failing.
   */
  ended(match: (span: RecordedSpan) => boolean, timeoutMs?: number): Promise<void>;
}

/**
 * Makes a recording tracer provider.
 *
 * @returns The provider; its tracer ignores the name it is asked for.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordingTracerProvider } from "@homelab/handler-base/testing";
 *
 * const provider = recordingTracerProvider();
 * provider.getTracer("x").startSpan("one").addEvent("seen");
 * assert.equal(provider.spans[0]?.events[0]?.name, "seen");
 * ```
 */
export function recordingTracerProvider(): RecordingTracerProvider {
  const spans: RecordedSpan[] = [];
  const onEnd = new Set<() => void>();
  const names = new WeakMap<Span, string>();
  const tracer = {
    startSpan(name: string, _options?: unknown, parentContext?: Context): Span {
      const parentSpan = parentContext ? trace.getSpan(parentContext) : undefined;
      const recorded: RecordedSpan = {
        name,
        parent: parentSpan ? names.get(parentSpan) : undefined,
        attributes: {},
        events: [],
        ended: false,
      };
      spans.push(recorded);
      const span: Span = {
        spanContext: () => INVALID_SPAN_CONTEXT,
        setAttribute(key, value) {
          recorded.attributes[key] = value;
          return span;
        },
        setAttributes(attributes) {
          Object.assign(recorded.attributes, attributes);
          return span;
        },
        addEvent(name, attributes) {
          recorded.events.push({ name, attributes: attributes as Attributes });
          return span;
        },
        addLink: () => span,
        addLinks: () => span,
        setStatus: () => span,
        updateName: () => span,
        end() {
          recorded.ended = true;
          for (const notify of onEnd) notify();
        },
        isRecording: () => true,
        recordException() {},
      };
      names.set(span, name);
      return span;
    },
  } as unknown as Tracer;
  function ended(match: (span: RecordedSpan) => boolean, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!spans.some((span) => span.ended && match(span))) return;
        onEnd.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        onEnd.delete(check);
        reject(new Error(`No matching span ended within ${timeoutMs} ms`));
      }, timeoutMs);
      onEnd.add(check);
      check();
    });
  }
  return { spans, ended, getTracer: () => tracer };
}
