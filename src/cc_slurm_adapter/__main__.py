from cc_slurm_adapter.cli import main

raise SystemExit(main())
