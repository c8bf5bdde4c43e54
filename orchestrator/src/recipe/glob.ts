import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const MAGIC = /[*?[{]/;

export function hasMagic(pattern: string): boolean {
  return MAGIC.test(pattern);
}

function segmentRegExp(segment: string): RegExp {
  let re = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '{') {
      const end = segment.indexOf('}', i);
      if (end < 0) re += '\\{';
      else {
        re += `(?:${segment.slice(i + 1, end).split(',').map(escape).join('|')})`;
        i = end;
      }
    } else if (c === '[') {
      const end = segment.indexOf(']', i);
      if (end < 0) re += '\\[';
      else {
        re += segment.slice(i, end + 1).replace('[!', '[^');
        i = end;
      }
    } else re += escape(c);
  }
  return new RegExp(`^${re}$`);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Files matching an absolute glob pattern (`*`, `?`, `[abc]`, `{a,b}`, `**`), sorted, hidden entries skipped.
 * A pattern without magic is returned as is when the file exists.
 */
export function globFiles(pattern: string): string[] {
  const root = path.parse(pattern).root;
  const segments = pattern.slice(root.length).split(/[\\/]+/).filter(Boolean);
  const out = new Set<string>();
  const walk = (dir: string, i: number): void => {
    if (i === segments.length) {
      if (!isDir(dir)) out.add(dir);
      return;
    }
    const seg = segments[i]!;
    if (seg === '**') {
      walk(dir, i + 1);
      for (const name of listDir(dir)) {
        const child = path.join(dir, name);
        if (!name.startsWith('.') && isDir(child)) walk(child, i);
      }
      return;
    }
    if (!hasMagic(seg)) {
      const child = path.join(dir, seg);
      if (i === segments.length - 1 ? statOk(child) : isDir(child)) walk(child, i + 1);
      return;
    }
    const re = segmentRegExp(seg);
    for (const name of listDir(dir)) {
      if (!name.startsWith('.') && re.test(name)) walk(path.join(dir, name), i + 1);
    }
  };
  walk(root, 0);
  return [...out].sort();
}

function statOk(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
