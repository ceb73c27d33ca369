// One line of the "minicloud logs" panel per log line. Pure.

export interface LogLine {
  time: string;
  role: string;
  release?: string | null;
  line: string;
}

export interface LogFormatOptions {
  showTime: boolean;
  roleWidth?: number;
}

export function formatLogLine(entry: LogLine, options: LogFormatOptions): string {
  const width = options.roleWidth ?? 7;
  const time = options.showTime && entry.time ? `${entry.time.replace('T', ' ').replace(/Z$/, '')} ` : '';
  const release = entry.release ? ` ${shortRelease(entry.release)}` : '';
  const text = entry.line.replace(/\r?\n$/, '');
  return `${time}[${entry.role.padEnd(width)}${release}] ${text}`;
}

/** 20261125-024033-d67222 → 024033-d67222: the date is noise in a live panel. */
export function shortRelease(release: string): string {
  const m = /^\d{8}-(\d{6}-\w+)$/.exec(release);
  return m ? m[1] : release;
}

export function formatBatch(lines: LogLine[], dropped: number, options: LogFormatOptions): string[] {
  const out = lines.map((l) => formatLogLine(l, options));
  if (dropped > 0) {
    out.push(`… ${dropped} lines dropped (the panel could not keep up)`);
  }
  return out;
}
