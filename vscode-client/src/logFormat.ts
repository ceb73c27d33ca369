// One line of the "minicloud logs" panel per log line. Pure.
// The text form is the CLI's (deploy_bridge.model.format_log_line): TIME ROLE[ RELEASE] | LINE.
// Both are tested against tests/data/log-lines.json.

export interface LogLine {
  time: string;
  role: string;
  release?: string | null;
  line: string;
}

export interface LogFormatOptions {
  showTime: boolean;
  app?: string; // several apps in the workspace: each line says whose it is
}

export function formatLogLine(entry: LogLine, options: LogFormatOptions): string {
  const time = options.showTime && entry.time ? `${entry.time} ` : '';
  const release = entry.release ? ` ${entry.release}` : '';
  const text = entry.line.replace(/\r?\n$/, '');
  return `${time}${entry.role}${release} | ${text}`;
}

export function formatBatch(lines: LogLine[], dropped: number, options: LogFormatOptions): string[] {
  const prefix = options.app ? `[${options.app}] ` : '';
  const out = lines.map((l) => prefix + formatLogLine(l, options));
  if (dropped > 0) {
    out.push(`… ${dropped} lines dropped (the panel could not keep up)`);
  }
  return out;
}
