/** The exit codes of pakr's command-line tools, for Node.js scripts that mirror them. */
import {
  AlreadyRegistered,
  ClusterUnavailable,
  CommitIncomplete,
  ConfigError,
  Conflict,
  InvalidAuth,
  InvalidPassword,
  LockedOut,
  NotRegistered,
  type PakrError,
  ProtocolError,
  WeakParameters,
} from "./errors.js";

export enum ExitCode {
  OK = 0,
  FAILED = 1,
  USAGE = 2,
  INVALID_PASSWORD = 3,
  NOT_REGISTERED = 4,
  UNAVAILABLE = 5,
  AUTH = 6,
  PROTOCOL = 7,
  LOCKED_OUT = 8,
  INTERRUPTED = 130,
}

/** The documented exit code for `error` (the same mapping as the Python CLIs). */
export function exitCodeFor(error: PakrError): ExitCode {
  if (error instanceof LockedOut) return ExitCode.LOCKED_OUT;
  if (error instanceof InvalidPassword) return ExitCode.INVALID_PASSWORD;
  if (error instanceof NotRegistered) return ExitCode.NOT_REGISTERED;
  if (error instanceof ClusterUnavailable || error instanceof CommitIncomplete || error instanceof Conflict) {
    return ExitCode.UNAVAILABLE;
  }
  if (error instanceof InvalidAuth) return ExitCode.AUTH;
  if (error instanceof ProtocolError || error instanceof WeakParameters) return ExitCode.PROTOCOL;
  if (error instanceof ConfigError || error instanceof AlreadyRegistered) return ExitCode.USAGE;
  return ExitCode.FAILED;
}
