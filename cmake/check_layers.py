#!/usr/bin/env python3
"""check_layers.py: fails the build when an #include crosses the layer arrows CMake declares.

Usage: check_layers.py SOURCE_ROOT LAYERS_TXT

LAYERS_TXT (written by cmake/Layers.cmake) has one unit per line: name|dirs|sources|deps, lists
comma-separated; a source "!f" excludes dir/f from the unit. Every file directly in a unit's dir
(.c .h .cu .inc) belongs to it. A file may include (by its path from the repository root) headers
of its own unit and of the units its unit links, directly or through them; and every unit a target
links directly must be used by at least one of its files. "alora.pb.h" (generated) belongs to
alora_ipc.

Private headers are for their own unit only: a backend's internals (kernels/cpu/, kernels/cuda/)
and any *_int.h / *_impl.h.
"""
import os
import re
import sys

EXTS = ('.c', '.h', '.cu', '.inc')
PRIVATE_DIRS = ('kernels/cpu/', 'kernels/cuda/')


def private(path):
    return path.startswith(PRIVATE_DIRS) or path.endswith(('_int.h', '_impl.h'))
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    root, layers = sys.argv[1], sys.argv[2]
    units = {}
    for line in open(layers):
        line = line.strip()
        if not line:
            continue
        name, dirs, srcs, deps = (line.split('|') + ['', '', ''])[:4]
        split = lambda s: [x for x in s.split(',') if x]
        units[name] = {'dirs': split(dirs), 'srcs': split(srcs), 'deps': split(deps)}

    owner, errors = {}, []

    def own(path, name):
        if path in owner and owner[path] != name:
            errors.append(f'{path}: claimed by both {owner[path]} and {name}')
        owner[path] = name

    for name, u in units.items():
        excl = {s[1:] for s in u['srcs'] if s.startswith('!')}
        for d in u['dirs']:
            for f in sorted(os.listdir(os.path.join(root, d))):
                p = os.path.join(d, f)
                if f.endswith(EXTS) and f not in excl and os.path.isfile(os.path.join(root, p)):
                    own(p, name)
        for s in u['srcs']:
            if not s.startswith('!'):
                own(s, name)
    for name, u in units.items():
        for d in u['deps']:
            if d not in units:
                errors.append(f'{name}: links {d}, which is not a declared layer')

    def closure(name, seen=None):
        seen = set() if seen is None else seen
        for d in units[name]['deps']:
            if d in units and d not in seen:
                seen.add(d)
                closure(d, seen)
        return seen

    used = {name: set() for name in units}
    for path in sorted(owner):
        name = owner[path]
        allowed = closure(name) | {name}
        text = open(os.path.join(root, path), encoding='utf-8', errors='replace').read()
        for inc in INCLUDE.findall(text):
            if inc == 'alora.pb.h':
                target = 'alora_ipc'
            elif os.path.isfile(os.path.join(root, inc)):
                target = owner.get(os.path.normpath(inc))
                if target is None:
                    errors.append(f'{path}: includes "{inc}", which belongs to no library layer')
                    continue
            else:
                errors.append(f'{path}: #include "{inc}" must name the file from the repository root '
                              f'(e.g. "common/err.h")')
                continue
            if target != name and private(os.path.normpath(inc)):
                errors.append(f'{path}: includes "{inc}", a private header of {target} (use its public '
                              f'interface: kernels/kernels.h, the engine, ...)')
            elif target not in allowed:
                errors.append(f'{path}: includes "{inc}" of {target}, but {name} does not link {target} '
                              f'(it links: {", ".join(units[name]["deps"]) or "nothing"})')
            elif target != name:
                used[name].add(target)
    for name, u in units.items():
        for d in u['deps']:
            if d in units and d not in used[name]:
                errors.append(f'{name}: links {d} but none of its files includes a header of {d}')
    if errors:
        sys.stderr.write('layer check failed (docs/architecture.md has the rule of arrows):\n')
        for e in errors:
            sys.stderr.write('  ' + e + '\n')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
