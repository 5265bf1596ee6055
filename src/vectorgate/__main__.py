from vectorgate.cli import main

raise SystemExit(main())
