#!/usr/bin/env bash
# nowerror.sh: compiler launcher that appends -Wno-error (the GPU machine's newer gcc may warn where
# the project's Debian gcc 12, which CI uses with -Werror, does not).
exec "$@" -Wno-error
