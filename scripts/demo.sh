#!/usr/bin/env bash
echo "make demo: not yet (the dev cluster lands with the servers issue)"
