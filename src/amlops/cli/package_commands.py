"""package: build the Azure DevOps extension (.vsix) from vss-extension.json and tasks/, without tfx-cli."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("package")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="Folder holding vss-extension.json (the repository root).")
@click.option("--out", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="Folder for <publisher>.<id>-<version>.vsix, or a file name ending in .vsix. "
                   "Default: the current folder.")
@click.option("--publisher", metavar="ID", help="Marketplace publisher id, instead of the manifest's.")
@click.option("--override", "override_json", metavar="JSON",
              help="JSON merged into the manifest, e.g. '{\"public\": true}' (wins over --overrides-file).")
@click.option("--overrides-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="A JSON file merged into the manifest.")
@click.option("--rev-version", is_flag=True,
              help="Bump the extension's last version number and every task's Patch, written back to "
                   "vss-extension.json and task.json (Azure DevOps ignores an update whose task versions did not "
                   "change).")
@click.option("--dev", is_flag=True,
              help="The dev flavour: extension id <id>-dev, task ids derived by uuid5, private; installs next "
                   "to the production extension.")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="WHEEL",
              help="Ship this amlops wheel instead of building one from the root.")
@click.option("--stage-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Keep the staged package root here (a new or empty folder), e.g. to inspect it or feed tfx.")
@click.option("--no-cache", is_flag=True,
              help="Build the wheel even when one built from the same sources is cached (AMLOPS_CACHE_DIR/wheels).")
def package(root: Path, out: Path | None, publisher: str | None, override_json: str | None,
            overrides_file: Path | None, rev_version: bool, dev: bool, wheel: Path | None,
            stage_dir: Path | None, no_cache: bool) -> None:
    """Build the .vsix the Visual Studio Marketplace and Azure DevOps Server accept: the amlops wheel (setuptools),
    each task folder (task.json, icon, launcher, wheel, pinned constraints) and the manifests tfx-cli would write.

    Everything is validated first; on any problem each is listed and nothing is written. Two runs on the same
    inputs give byte-identical packages.
    """
    from amlops.packaging.package import PackageOptions, package_extension

    result = package_extension(PackageOptions(root=root, out=out, publisher=publisher, override=override_json,
                                              overrides_file=overrides_file, rev_version=rev_version, dev=dev,
                                              wheel=wheel, stage_dir=stage_dir, no_cache=no_cache))
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(f"{result.path}  ({result.size / 1024:.0f} KiB, {len(result.parts)} parts, "
               f"{result.seconds['total']:.1f} s)")
    click.echo(f"  extension {result.publisher}.{result.extension_id} {result.version}")
    for task in result.tasks:
        click.echo(f"  task {task.name} {task.version}  id {task.id}")
    if rev_version:
        click.echo("  versions bumped in vss-extension.json and every task.json: commit them")


COMMANDS = [package]
