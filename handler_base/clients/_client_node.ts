/**
 * The parts of `@kubernetes/client-node` the Argo client uses, and only
 * those. `argo.ts` imports this module dynamically: a dynamic import of the
 * package itself keeps every export of its index alive in a bundle (the
 * generated API classes of the whole Kubernetes API: pipeline-bridge's
 * minified bundle was 4.5 MB with them), while named re-exports let the
 * bundler drop the classes nothing names (1.9 MB; docs/PERFORMANCE.md,
 * "Sixth pass").
 *
 * @module
 */
export {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  Observable,
  Watch,
} from "@kubernetes/client-node";
