#!/usr/bin/env python3
"""Import graph of src/ by file, from `use` items and inline `crate::`/`super::`
paths, and the import cycles in it (strongly connected components).

Usage: scripts/import-cycles.py [src-dir] [--edges]
Exit status 1 when there is a cycle. Comments and #[cfg(test)] modules are
ignored (a test module may import what its file's users import)."""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith('-') else 'src'
show_edges = '--edges' in sys.argv

def module_of(path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ('mod', 'lib', 'main'):
        rel = rel[:-1]
    return rel

files = {}
for d, _, names in os.walk(root):
    for n in names:
        if n.endswith('.rs'):
            p = os.path.join(d, n)
            files[tuple(module_of(p))] = p
# main.rs is a separate crate root; keep lib's view.
files.pop((), None)

def resolve(segs):
    """Longest prefix of segs that names a file module."""
    for k in range(len(segs), 0, -1):
        if tuple(segs[:k]) in files:
            return files[tuple(segs[:k])]
    return None

def strip(src):
    src = re.sub(r'//[^\n]*', '', src)
    src = re.sub(r'/\*.*?\*/', '', src, flags=re.S)
    # drop #[cfg(test)] mod tests { ... } (to the end of the file: by convention last)
    m = re.search(r'#\[cfg\(test\)\](?:\s*#\[(?:[^\[\]]|\[[^\]]*\])*\])*\s*mod\s+\w+\s*\{', src)
    if m:
        src = src[:m.start()]
    return src

def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']"""
    tree = tree.strip()
    i = tree.find('{')
    if i < 0:
        return [tree]
    prefix, body = tree[:i], tree[i + 1:tree.rfind('}')]
    parts, depth, cur = [], 0, ''
    for ch in body:
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
            continue
        depth += ch == '{'
        depth -= ch == '}'
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out += [prefix + x for x in expand(p)]
    return out

edges = {}
for mod, path in files.items():
    src = strip(open(path).read())
    is_dir_mod = os.path.basename(path) in ('mod.rs', 'lib.rs')
    here = list(mod) if is_dir_mod else list(mod[:-1])  # the module's parent dir for `super`
    self_mod = list(mod)
    targets = set()
    paths = []
    for m in re.finditer(r'\buse\s+([^;]+);', src):
        paths += expand(re.sub(r'\s+', ' ', m.group(1)))
    paths += re.findall(r'\b((?:crate|super)(?:::\w+)+)', src)
    children = {c[-1] for c in files if len(c) == len(self_mod) + 1 and list(c[:-1]) == self_mod}
    # Inline `child::item` paths in a mod.rs (`edge::host_name(..)`).
    for c in children:
        paths += [m.group(0) for m in re.finditer(r'(?<![:\w])' + c + r'(?:::\w+)+', src)]
    for p in paths:
        p = re.sub(r'\s+as\s+\w+$', '', p.strip())
        segs = [s for s in p.split('::') if s]
        if not segs:
            continue
        if segs[0] == 'crate':
            full = segs[1:]
        elif segs[0] == 'super':
            base = list(mod[:-1])
            while segs and segs[0] == 'super':
                segs = segs[1:]
            full = base + segs
        elif segs[0] == 'self':
            full = self_mod + segs[1:]
        elif segs[0] in children:
            full = self_mod + segs
        else:
            continue
        t = resolve(full)
        if t and t != path:
            targets.add(t)
    edges[path] = targets

# Tarjan SCC
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
for v in sorted(edges):
    if v not in index:
        visit(v)
if show_edges:
    for v in sorted(edges):
        for w in sorted(edges[v]):
            print(f'{v} -> {w}')
for c in sccs:
    print('cycle:', ' <-> '.join(os.path.relpath(p, root) for p in c))
    for v in c:
        for w in sorted(edges[v]):
            if w in c:
                print(f'    {os.path.relpath(v, root)} -> {os.path.relpath(w, root)}')
print(f'{len(sccs)} import cycle(s) among {len(files)} files')
sys.exit(1 if sccs else 0)
