// Generated from hearth.protocol by build_support/wire_types.py: do not edit by hand.
// The shapes the server answers (SPEC §3.1, §4.2, §10); the Python models are the source.

export interface JupyterName {
  id: string;
  path: string;
  name: string;
  type: string;
}

export interface KernelFile {
  url: string;
  path: string;
  size?: number | null;
}

export interface KernelState {
  session_id: string;
  status: string;
  kernel_name: string;
  working_dir: string;
  files?: KernelFile[];
  created_at: number;
  last_activity: number;
  from_pool?: boolean;
  execution_count?: number;
  execution_state?: string;
  connections?: number;
  jupyter?: JupyterName | null;
  closed_reason?: "host_lost" | "node_lost" | null;
}

export interface PoolState {
  target: number;
  ready: number;
  starting: number;
  active: number;
  max_kernels: number;
}

export interface TerminalState {
  id: string;
  name: string;
  user: string;
  protocol: "local" | "ssh";
  status: "active" | "disconnected" | "closed";
  alive: boolean;
  exit_code: number | null;
  created_at: number;
  last_activity: number;
  expires_at: number | null;
  rows: number;
  cols: number;
  viewers: number;
  output_start: number;
  output_end: number;
  command?: string[];
  closed_reason?: "host_lost" | "node_lost" | null;
  connection_id?: string | null;
  exit_reason?: string | null;
}
