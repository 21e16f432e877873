"""A stand-in for the docker CLI and a registry, for running the pipeline's own script lines offline
(tests/infra/test_gitlab_ci.py). State lives in the JSON file FAKE_DOCKER_STATE.

Only what the pipeline uses: build (every build makes new bytes, as `--pull` on a moved base
would), tag, push, image inspect (RepoDigests), run/exec/rm/logs (the smoke test), login, and
buildx imagetools create/inspect. imagetools create wraps a single manifest in a new index, with
a digest of its own, unless --prefer-index=false, as buildx does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def split(ref: str) -> tuple[str, str]:
    """name, tag of name:tag (a name may hold a registry port)."""
    name, _, tag = ref.rpartition(":")
    assert name and "/" not in tag, f"not name:tag: {ref}"
    return name, tag


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def main(args: list[str]) -> int:
    path = Path(os.environ["FAKE_DOCKER_STATE"])
    state = json.loads(path.read_text()) if path.exists() else {
        "builds": 0, "local": {}, "registry": {}, "repo_digests": {}}
    local, registry = state["local"], state["registry"]
    command = args[0]
    if command == "login":
        sys.stdin.read()
    elif command == "build":
        state["builds"] += 1
        local[option(args, "--tag")] = digest_of(f"build {state['builds']} {args}")
    elif command == "tag":
        local[args[2]] = local[args[1]]
    elif command == "push":
        name, _ = split(args[-1])
        image = local[args[-1]]
        registry[args[-1]] = digest_of(f"manifest of {image}")
        digests = state["repo_digests"].setdefault(image, [])
        if f"{name}@{registry[args[-1]]}" not in digests:
            digests.append(f"{name}@{registry[args[-1]]}")
    elif args[:2] == ["image", "inspect"]:
        print("\n".join(state["repo_digests"].get(local[args[-1]], [])))
    elif command in ("run", "rm", "logs"):
        print("0123456789ab")
    elif command == "exec":
        sys.stdin.read()
    elif args[:3] == ["buildx", "imagetools", "create"]:
        name, _, digest = args[-1].partition("@")
        if digest not in {d for ref, d in registry.items() if split(ref)[0] == name}:
            print(f"ERROR: {args[-1]}: not found", file=sys.stderr)
            return 1
        carbon_copy = "--prefer-index=false" in args
        registry[option(args, "--tag")] = digest if carbon_copy else digest_of(f"index around {digest}")
    elif args[:3] == ["buildx", "imagetools", "inspect"]:
        if args[-1] not in registry:
            print(f"ERROR: {args[-1]}: not found", file=sys.stderr)
            return 1
        print(f"Name:      {args[-1]}\nMediaType: application/vnd.docker.distribution.manifest.v2+json\n"
              f"Digest:    {registry[args[-1]]}")
    else:
        print(f"fake docker: unexpected command {args}", file=sys.stderr)
        return 3
    path.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
