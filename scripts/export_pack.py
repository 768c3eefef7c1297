#!/usr/bin/env python3
"""Write the images of a pack (a prepared image set, ``*.zip``) as plain files to look at.

With ``--base``, the pack is an anonymised variant's delta and the export is the whole
variant (the base's images, with the delta's changed ones in their place).
"""

from overlearning.core.packs import export_pack, open_pack, verify_pack
from overlearning.workflow.cli import ScriptParser, report


def main() -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--pack", required=True, help="the pack to export")
    parser.add_argument("--base", help="the base pack of an anonymised delta")
    parser.add_argument("--verify", action="store_true",
                        help="only check every member's size and CRC-32; write nothing")
    parser.add_argument("--out", help="folder to write (replaced as a whole on success)")
    args = parser.parse()
    if args.verify:
        report(verify_pack(args.pack))
        return
    if not args.out:
        parser.error("--out is required unless --verify is given")
    count = export_pack(open_pack(args.pack, base=args.base), args.out)
    report({"exported": count, "out": args.out})


if __name__ == "__main__":
    main()
