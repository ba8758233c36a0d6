#!/usr/bin/env bash
# Regenerate README.md from nbs/index.ipynb (needs Quarto), with its notebook links pointing into nbs/.
set -euo pipefail
cd "$(dirname "$0")/.."
nbdev_readme
sed -i -E 's#\]\(([0-9]{2}_[A-Za-z0-9_]+\.ipynb)(\#[^)]*)?\)#](nbs/\1\2)#g' README.md
