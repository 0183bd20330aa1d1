from serving.protos.build import main

raise SystemExit(main())
