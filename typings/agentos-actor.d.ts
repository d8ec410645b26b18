// Generated from crates/agentos-actor/src/contract.rs by `cargo run -p agentos-actor --bin agentos-typings -- --write`. Do not edit.

export type DirEntry = { name: string; isDirectory: boolean; isSymbolicLink: boolean };
export type VirtualStat = { mode: number; size: number; blocks: number; dev: number; rdev: number; isDirectory: boolean; isSymbolicLink: boolean; atimeMs: number; mtimeMs: number; ctimeMs: number; birthtimeMs: number; ino: number; nlink: number; uid: number; gid: number };
export type BatchReadResult = { path: string; content?: Uint8Array; error?: string };
export type BatchWriteResult = { path: string; success: boolean; error?: string };
export type RecursiveEntry = { path: string; type: "file" | "directory" | "symlink"; size: number };
export type FsCheckReport = { clean: boolean; inodes: number; entries: number; chunks: number; problems: string[] };
export type SnapshotEntry = { path: string; type: "directory" | "file" | "symlink" | "hardlink"; mode: number; uid: number; gid: number; mtimeMs: number; content?: Uint8Array; target?: string; linkTo?: string };
export type RootSnapshot = { format: "agentos-root-v1"; entries: SnapshotEntry[] };
export type MountEntry = { path: string; kind: string; readOnly: boolean; persisted: boolean };
export type ExecResult = { exitCode: number; stdout: string; stderr: string };
export type CodeResult = { outcome: "succeeded" | "failed" | "cancelled" | "timedOut"; exitCode: number | null; stdout: string; stderr: string; stdoutTruncated: boolean; stderrTruncated: boolean; error: { code: string; name: string; message: string; stack: string | null } | null };
export type EvaluationResult = CodeResult & { value: unknown };
export type SpawnedProcessInfo = { pid: number; command: string; args: string[]; running: boolean; exitCode: number | null; startedAt: number };
export type ProcessInfo = { pid: number; ppid: number; pgid: number; sid: number; driver: string; command: string; args: string[]; cwd: string; status: "running" | "exited"; exitCode: number | null; startTime: number; exitTime: number | null };
export type ProcessTreeNode = ProcessInfo & { children: ProcessTreeNode[] };
export type OutputChunk = { seq: number; stream: "stdout" | "stderr"; data: Uint8Array };
export type Replay = { chunks: OutputChunk[]; lastSeq: number; missed: number };
export type ShellInfo = { shellId: string; command: string; args: string[]; cols: number; rows: number; running: boolean; exitCode: number | null; lastSeq: number };
export type FetchResponse = { status: number; statusText: string; headers: Record<string, string>; body: Uint8Array };
export type PreviewUrl = { path: string; token: string; port: number; expiresAt: number };
export type CronJob = { id: string; schedule: string; action: unknown; overlap: "allow" | "skip" | "queue"; lastRun: number | null; nextRun: number | null; runCount: number; running: boolean; lastError: string | null };
export type PendingPermission = { sessionId: string; permissionId: string; options: { optionId: string; name: string; kind: string }[]; toolCall: unknown };
export type PersistedSession = { sessionId: string; agentType: string; cwd: string; status: "idle" | "running" | "waiting" | "failed"; open: boolean; latestSeq: number; title?: string; createdAt: string; updatedAt: string };
export type SessionEventEntry = { sessionId: string; seq: number; event: { type: string; [key: string]: unknown }; createdAt: string };
export type ToolKitEntry = { name: string; description?: string; tools: { name: string; description?: string; inputSchema?: unknown; timeoutMs?: number }[]; source: "config" | "registered"; live: boolean };
export type SoftwareEntry = { package: string; commands: string[] };
export type AgentEntry = { id: string; installed: boolean };
export type RuntimeHealth = { booted: boolean; sidecar: { id: string; state: string; activeVmCount: number } | null; processes: number; shells: number };

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
  /** Read many files; each entry has `content` or an `error`, one bad path fails only its entry. */
  readFiles(paths: string[]): Promise<BatchReadResult[]>;
  /** Create or replace many files (missing parent directories are created); each entry reports `success` or an `error`. */
  writeFiles(entries: { path: string; content: string | Uint8Array }[]): Promise<BatchWriteResult[]>;
  /** List a directory tree (sorted by path; symlinks are listed, not followed). */
  readdirRecursive(path: string, options?: { maxDepth?: number; exclude?: string[] }): Promise<RecursiveEntry[]>;
  /** Check the durable root's stored structures (every inode reachable, link counts, chunks) and report any problem; like `fsck -n`. */
  checkRootFilesystem(): Promise<FsCheckReport>;
  /** Export the whole durable root: every entry with its bytes, mode, owner, mtime, symlink target and hard links (at most 20 MiB of file content). */
  snapshotRootFilesystem(): Promise<RootSnapshot>;
  /** Write a snapshot into this actor's durable root; the VM must not be running (call it first on a new actor to start that actor from the snapshot). */
  restoreRootFilesystem(snapshot: { format: string; entries: unknown }): Promise<{ entries: number; bytes: number }>;
  /** Mount a filesystem at `path` now and at every later VM boot (stored in the actor). */
  mountFs(path: string, driver: { id: string; config?: unknown }, options?: { readOnly?: boolean }): Promise<null>;
  /** Remove a mount added with `mountFs` (now and for later boots). */
  unmountFs(path: string): Promise<null>;
  /** The VM's live mount table; `persisted` marks mounts added with `mountFs`. */
  listMounts(): Promise<MountEntry[]>;
  /** Run a command line (shell syntax allowed) to completion and return its output. */
  exec(command: string, options?: { env?: Record<string, string>; cwd?: string; stdin?: string | Uint8Array; timeoutMs?: number }): Promise<ExecResult>;
  /** Run a command with an exact argument vector (no shell parsing) to completion. */
  execArgv(command: string, args: string[], options?: { env?: Record<string, string>; cwd?: string; stdin?: string | Uint8Array; timeoutMs?: number }): Promise<ExecResult>;
  /** Run a JavaScript or TypeScript program in the VM's V8 (Node 22 API) and return its output. One action with a `language` argument mirrors the engine's per-language execute calls; Python is absent because engine 0.2.21 ships no Python runtime. */
  executeCode(language: "javascript" | "typescript", code: string, options?: { env?: Record<string, string>; cwd?: string; stdin?: string | Uint8Array; timeoutMs?: number }): Promise<CodeResult>;
  /** Evaluate a JavaScript or TypeScript expression and return its JSON value with the run's output. */
  evaluateCode(language: "javascript" | "typescript", expression: string, options?: { env?: Record<string, string>; cwd?: string; stdin?: string | Uint8Array; timeoutMs?: number }): Promise<EvaluationResult>;
  /** Start a process; its output arrives as `processOutput` events (also kept for `readProcessOutput`) and its end as `processExit`. No PTY: engine 0.2.21 spawns processes on pipes only (use a shell for a terminal). */
  spawn(command: string, args: string[], options?: { env?: Record<string, string>; cwd?: string; streamStdin?: boolean; stdin?: string | Uint8Array }): Promise<{ pid: number }>;
  /** Wait for a spawned process to exit and return its exit code (after its last `processOutput`). */
  waitProcess(pid: number): Promise<number>;
  /** Send SIGKILL to a spawned process, once it runs and after its earlier stdin operations (no-op once it exited). */
  killProcess(pid: number): Promise<null>;
  /** Send SIGTERM to a spawned process, once it runs and after its earlier stdin operations (no-op once it exited). */
  stopProcess(pid: number): Promise<null>;
  /** Describe one spawned process. */
  getProcess(pid: number): Promise<SpawnedProcessInfo>;
  /** List the processes clients spawned in the running VM (none while it is not booted). */
  listProcesses(): Promise<SpawnedProcessInfo[]>;
  /** List the VM kernel's whole process table (none while the VM is not booted). */
  allProcesses(): Promise<ProcessInfo[]>;
  /** The kernel process table as a forest linked by parent pid. */
  processTree(): Promise<ProcessTreeNode[]>;
  /** Write to a spawned process's stdin. Writes are delivered in order and only once the process runs; the reply comes when the data was handed to the VM. */
  writeProcessStdin(pid: number, data: string | Uint8Array): Promise<null>;
  /** Close a spawned process's stdin (after every earlier write), so it reads end of file. */
  closeProcessStdin(pid: number): Promise<null>;
  /** Replay a spawned process's output after sequence number `after` (default 0: all that is kept). The log keeps the newest 1 MiB; `missed` counts chunks dropped before they could be replayed. */
  readProcessOutput(pid: number, after?: number): Promise<Replay>;
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
  readShellOutput(shellId: string, after?: number): Promise<Replay>;
  /** Send an HTTP request to a server listening on `port` inside the VM. */
  vmFetch(port: number, url: string, options?: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array }): Promise<FetchResponse>;
  /** Create an unguessable URL path that proxies HTTP to a guest port until it expires (`ttlSeconds` at most 86400; 0 or absent: 3600). */
  createSignedPreviewUrl(port: number, ttlSeconds?: number): Promise<PreviewUrl>;
  /** Revoke a preview URL now (idempotent). */
  expireSignedPreviewUrl(token: string): Promise<null>;
  /** Schedule a job; it runs at its times even while the actor sleeps (a host alarm wakes it) and survives restarts. */
  scheduleCron(options: { id?: string; schedule: string; action: unknown; overlap?: "allow" | "skip" | "queue" }): Promise<{ id: string }>;
  /** Every scheduled job with its last and next run (epoch ms, or null). */
  listCronJobs(): Promise<CronJob[]>;
  /** Remove a job; a run in progress finishes. */
  cancelCronJob(id: string): Promise<null>;
  /** Start an agent session (or reopen one with the same `sessionId`); replies with its id. */
  createSession(agentType: string, options?: { sessionId?: string; cwd?: string; env?: Record<string, string>; mcpServers?: unknown; permissionPolicy?: "allow_all" | "ask" | "reject_all"; additionalInstructions?: string; skipOsInstructions?: boolean; additionalDirectories?: string[] }): Promise<string>;
  /** Prompt the agent and wait for the turn to end; progress streams as `sessionEvent`. */
  sendPrompt(sessionId: string, prompt: unknown): Promise<{ text: string; stopReason: string; message: unknown | null }>;
  /** Cancel the session's running turn. */
  cancelPrompt(sessionId: string): Promise<{ status: "cancelled" | "no_active_prompt" }>;
  /** Answer a `permissionRequest`: `once`, `always`, `reject`, or one of the request's option ids. */
  respondPermission(sessionId: string, permissionId: string, reply: string): Promise<{ status: "accepted" | "not_pending"; reason?: string }>;
  /** Permission requests of open sessions still waiting for an answer. */
  listPendingPermissions(): Promise<PendingPermission[]>;
  /** The agent's ACP config options for the session (modes, models, ...). */
  getSessionConfigOptions(sessionId: string): Promise<{ revision: number; options: unknown[] }>;
  /** Set one of the agent's config options. */
  setSessionConfigOption(sessionId: string, configId: string, value: unknown): Promise<{ revision: number; options: unknown[] }>;
  /** Set the agent's mode option (fails with `unsupported` when the agent has none). */
  setSessionMode(sessionId: string, modeId: string): Promise<{ revision: number; options: unknown[] }>;
  /** Set the agent's model option (fails with `unsupported` when the agent has none). */
  setSessionModel(sessionId: string, modelId: string): Promise<{ revision: number; options: unknown[] }>;
  /** Set the agent's thought-level option (fails with `unsupported` when the agent has none). */
  setSessionThoughtLevel(sessionId: string, level: string): Promise<{ revision: number; options: unknown[] }>;
  /** What the agent said it can do (ACP capabilities), or null. */
  getSessionCapabilities(sessionId: string): Promise<unknown | null>;
  /** The agent's name and version (ACP implementation info), or null. */
  getSessionAgentInfo(sessionId: string): Promise<{ name: string; version: string; title?: string } | null>;
  /** Sessions open in the running VM (none while it sleeps; this never boots it). */
  listSessions(): Promise<{ sessionId: string; agentType: string }[]>;
  /** Every stored session, open or not. */
  listPersistedSessions(): Promise<PersistedSession[]>;
  /** Stored events of a session in sequence order, a page at a time (a reconnecting client reads what it missed). */
  getSessionEvents(sessionId: string, options?: { after?: number; limit?: number }): Promise<SessionEventEntry[]>;
  /** The session's conversation as Markdown. */
  getSessionTranscript(sessionId: string): Promise<string>;
  /** Stop the session's agent; its history stays (a later prompt reopens it). */
  closeSession(sessionId: string): Promise<null>;
  /** Stop the session's agent and delete the session with its history. */
  deleteSession(sessionId: string): Promise<null>;
  /** Store a toolkit (replacing one of the same name); the VM offers it from its next boot. */
  registerToolKit(toolkit: { name: string; description?: string; tools: { name: string; description?: string; inputSchema?: unknown; timeoutMs?: number }[] }): Promise<null>;
  /** Remove a registered toolkit (from the next VM boot on). */
  removeToolKit(name: string): Promise<null>;
  /** The toolkits of config and registry; `live` marks those the running VM offers. */
  listToolKits(): Promise<ToolKitEntry[]>;
  /** Answer a `toolCall` event: the guest gets `result`, or fails with `error`. */
  respondToolCall(callId: string, response: { result?: unknown; error?: string }): Promise<null>;
  /** The packages projected into the VM and the commands each provides. */
  listSoftware(): Promise<SoftwareEntry[]>;
  /** Add a package to the running VM (and to every later boot); only packages the config lists in `linkablePackages` can be linked. */
  linkSoftware(name: string): Promise<SoftwareEntry[]>;
  /** The agents the VM's packages provide (for sessions). */
  listAgents(): Promise<AgentEntry[]>;
  /** Whether the VM runs, its sidecar's state, and what runs in it; never boots the VM. */
  getRuntimeHealth(): Promise<RuntimeHealth>;
}

export interface AgentOsEvents {
  /** A chunk of a spawned process's output; `seq` numbers the process's chunks from 1 (the `readProcessOutput` cursor). */
  processOutput: (payload: { pid: number; seq: number; stream: "stdout" | "stderr"; data: Uint8Array }) => void;
  /** A spawned process exited; sent after its last `processOutput`. */
  processExit: (payload: { pid: number; exitCode: number }) => void;
  /** Terminal output of a shell, in order (stdout and stderr as the PTY produced them). `seq` numbers chunks in the shell's output log. */
  shellData: (payload: { shellId: string; seq: number; data: Uint8Array }) => void;
  /** A copy of a shell's stderr-only output, for diagnostics (already contained in `shellData`; do not render both). */
  shellStderr: (payload: { shellId: string; seq: number; data: Uint8Array }) => void;
  /** A shell exited, after its last `shellData`. */
  shellExit: (payload: { shellId: string; exitCode: number }) => void;
  /** A job fired, completed or failed (`time` in epoch ms). Session jobs name their `sessionId`; on completion they carry the reply's `stopReason` and `text` (its first 2,000 characters; the whole turn is in `getSessionEvents`). */
  cronEvent: (payload: { event: { type: "cron:fire"; jobId: string; time: number; sessionId?: string } | { type: "cron:complete"; jobId: string; time: number; durationMs: number; sessionId?: string; stopReason?: string; text?: string; textTruncated?: boolean } | { type: "cron:error"; jobId: string; time: number; error: string; sessionId?: string } }) => void;
  /** A session update: stored ones carry `seq` (page with `getSessionEvents`); streaming deltas have `ephemeral: true`. */
  sessionEvent: (payload: { sessionId: string; seq: number | null; timestamp?: string; afterSeq?: number; ephemeral?: true; event: { type: string; [key: string]: unknown } }) => void;
  /** The agent asks permission (policy `ask`); answer with `respondPermission`. */
  permissionRequest: (payload: { sessionId: string; permissionId: string; options: { optionId: string; name: string; kind: string }[]; toolCall: unknown }) => void;
  /** A permission request was answered or ended. */
  permissionResolved: (payload: { sessionId: string; permissionId: string; outcome: unknown; status: "accepted" | "not_pending"; reason: string | null }) => void;
  /** A session's agent process exited on its own; the next action on the session starts it again. */
  agentCrashed: (payload: { sessionId: string; event: { sessionId: string; agentType: string; processId: string; pid: number | null; exitCode: number | null; restart: string; restartCount: number; maxRestarts: number } }) => void;
  /** An event stream fell behind; read what was missed with the matching replay action. */
  streamError: (payload: { scope: "session"; id: string; code: "event_stream_lagged"; message: string }) => void;
  /** A guest called a host tool; answer with `respondToolCall` before its timeout. */
  toolCall: (payload: { callId: string; toolkit: string; tool: string; input: unknown; timeoutMs: number }) => void;
  /** The actor's VM finished booting. */
  vmBooted: (payload: {}) => void;
  /** The actor's VM stopped (`crashed`: its sidecar process died; the next action boots a new VM on the same durable root). */
  vmShutdown: (payload: { reason: "sleep" | "destroy" | "stopped" | "deadline" | "crashed" }) => void;
}
