// Generated from crates/agentos-actor/src/contract.rs by `cargo run -p agentos-actor --bin agentos-typings -- --write`. Do not edit.

export type DirEntry = { name: string; isDirectory: boolean; isSymbolicLink: boolean };
export type VirtualStat = { mode: number; size: number; blocks: number; dev: number; rdev: number; isDirectory: boolean; isSymbolicLink: boolean; atimeMs: number; mtimeMs: number; ctimeMs: number; birthtimeMs: number; ino: number; nlink: number; uid: number; gid: number };
export type FsCheckReport = { clean: boolean; inodes: number; entries: number; chunks: number; problems: string[] };
export type ExecResult = { exitCode: number; stdout: string; stderr: string };
export type ShellInfo = { shellId: string; command: string; args: string[]; cols: number; rows: number; running: boolean; exitCode: number | null; lastSeq: number };
export type ShellReplay = { chunks: { seq: number; stream: "stdout" | "stderr"; data: Uint8Array }[]; lastSeq: number; missed: number };

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
  /** Open an interactive shell on a terminal (PTY); its output arrives as `shellData` events and stays readable with `readShellOutput`. */
  openShell(options?: { command?: string; args?: string[]; env?: Record<string, string>; cwd?: string; cols?: number; rows?: number }): Promise<{ shellId: string }>;
  /** Type into a shell; writes reach it in the order they were sent. Resolves once the VM took the input. */
  writeShell(shellId: string, data: string | Uint8Array): Promise<null>;
  /** Change a shell's terminal size. */
  resizeShell(shellId: string, cols: number, rows: number): Promise<null>;
  /** End a shell (SIGTERM); its output and exit code stay readable. */
  closeShell(shellId: string): Promise<null>;
  /** Wait for a shell to exit and return its exit code (other actions run meanwhile). */
  waitShell(shellId: string): Promise<number>;
  /** The shells of the running VM, open order, including recently exited ones. */
  listShells(): Promise<ShellInfo[]>;
  /** A shell's output after sequence number `after` (default 0: all that is kept, the newest 1 MiB). Re-attach by reading what you missed, then follow `shellData` events with a larger `seq`. */
  readShellOutput(shellId: string, after?: number): Promise<ShellReplay>;
}

export interface AgentOsEvents {
  /** Terminal output of a shell, in order (stdout and stderr as the PTY produced them). `seq` numbers chunks in the shell's output log. */
  shellData: (payload: { shellId: string; seq: number; data: Uint8Array }) => void;
  /** A copy of a shell's stderr-only output, for diagnostics (already contained in `shellData`; do not render both). */
  shellStderr: (payload: { shellId: string; seq: number; data: Uint8Array }) => void;
  /** A shell exited, after its last `shellData`. */
  shellExit: (payload: { shellId: string; exitCode: number }) => void;
  /** The actor's VM finished booting. */
  vmBooted: (payload: {}) => void;
  /** The actor's VM stopped (`crashed`: its sidecar process died; the next action boots a new VM on the same durable root). */
  vmShutdown: (payload: { reason: "sleep" | "destroy" | "stopped" | "deadline" | "crashed" }) => void;
}
