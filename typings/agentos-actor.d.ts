// Generated from crates/agentos-actor/src/contract.rs by `cargo run -p agentos-actor --bin agentos-typings -- --write`. Do not edit.

export type DirEntry = { name: string; isDirectory: boolean; isSymbolicLink: boolean };
export type VirtualStat = { mode: number; size: number; blocks: number; dev: number; rdev: number; isDirectory: boolean; isSymbolicLink: boolean; atimeMs: number; mtimeMs: number; ctimeMs: number; birthtimeMs: number; ino: number; nlink: number; uid: number; gid: number };
export type FsCheckReport = { clean: boolean; inodes: number; entries: number; chunks: number; problems: string[] };
export type ExecResult = { exitCode: number; stdout: string; stderr: string };

export interface AgentOsActions {
  /** Read a whole file. */
  readFile(path: string): Promise<Uint8Array>;
  /** Create or replace a file with the given content (text is written as UTF-8). */
  writeFile(path: string, content: string | Uint8Array): Promise<null>;
  /** Create a directory; parents are created too unless `recursive: false`. */
  mkdir(path: string, options?: { recursive?: boolean }): Promise<null>;
  /** List the names in a directory (without `.` and `..`). */
  readdir(path: string): Promise<string[]>;
  /** List a directory with entry types; `null` when the path is missing or not a directory. */
  readdirEntries(path: string): Promise<DirEntry[] | null>;
  /** File metadata, following symlinks. */
  stat(path: string): Promise<VirtualStat>;
  /** Whether the path exists. */
  exists(path: string): Promise<boolean>;
  /** Rename or move a file or directory. */
  move(from: string, to: string): Promise<null>;
  /** Remove a file, or a directory (a non-empty one only with `recursive: true`). */
  deleteFile(path: string, options?: { recursive?: boolean }): Promise<null>;
  /** Check the durable root's stored structures (every inode reachable, link counts, chunks) and report any problem; like `fsck -n`. */
  checkRootFilesystem(): Promise<FsCheckReport>;
  /** Run a command line (shell syntax allowed) to completion and return its output. */
  exec(command: string, options?: { env?: Record<string, string>; cwd?: string }): Promise<ExecResult>;
}

export interface AgentOsEvents {
  /** The actor's VM finished booting. */
  vmBooted: (payload: {}) => void;
  /** The actor's VM stopped (`crashed`: its sidecar process died; the next action boots a new VM on the same durable root). */
  vmShutdown: (payload: { reason: "sleep" | "destroy" | "stopped" | "deadline" | "crashed" }) => void;
}
