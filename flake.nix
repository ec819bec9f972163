{
  description = "OpenAnomaly: forecast-based anomaly detection for Prometheus-compatible TSDBs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # `nix develop`: Python 3.11, uv, and the servers the integration tests start.
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.python311
            pkgs.uv
            pkgs.victoriametrics # provides the victoria-metrics binary
            pkgs.prometheus
            pkgs.redis
            pkgs.postgresql
          ];
          env = {
            UV_PYTHON = "${pkgs.python311}/bin/python3.11";
            UV_PYTHON_DOWNLOADS = "never";
          };
          shellHook = ''
            uv sync --quiet
            echo "openanomaly dev shell: 'uv run pytest' runs the tests, 'bash .ci/check' every check"
          '';
        };
      });
    };
}
