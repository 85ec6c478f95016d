# placeholder so setup.py builds in the kernels worktree; replaced at merge
