<#
.SYNOPSIS
    Installs dsreg-agent on a Windows device: binary, config, the SYSTEM collection task and
    the per-user logon task.

.DESCRIPTION
    - Copies dsreg-agent.exe to "$env:ProgramFiles\dsreg-agent" and the config to
      "$env:ProgramData\dsreg-agent\agent.toml" (kept if it already exists, so re-running the
      installer for an upgrade never loses local settings).
    - Registers the scheduled task "\dsreg-fleet\dsreg-agent (SYSTEM)": runs
      `dsreg-agent run` as NT AUTHORITY\SYSTEM at startup and restarts it if it stops. SYSTEM sees
      device state, the join diagnostics and the registration event log.
    - Registers "\dsreg-fleet\dsreg-agent (user)": at each logon, runs
      `dsreg-agent send --user-context` as the signed-in user, because PRT and WAM state only
      exist in the user's context.
    - The spool lives in "$env:ProgramData\dsreg-agent\spool" (SYSTEM) and
      "$env:LOCALAPPDATA\dsreg-agent\spool" (user), so reports survive days offline.

    Intune: package this folder (dsreg-agent.exe, agent.toml, both scripts) with
    IntuneWinAppUtil.exe, install command
      powershell.exe -ExecutionPolicy Bypass -File .\Install-DsregAgent.ps1 -Collector https://collector.contoso.com:50051
    uninstall command
      powershell.exe -ExecutionPolicy Bypass -File .\Uninstall-DsregAgent.ps1
    and detection rule: file "%ProgramFiles%\dsreg-agent\dsreg-agent.exe" exists. Install as
    System.

.PARAMETER Collector
    The collector's gRPC URL. https:// in production; http:// only on a lab network.

.PARAMETER TokenFile
    Optional path to a file holding the agent token; copied next to the config with an ACL
    that only SYSTEM and Administrators can read.

.PARAMETER CaFile
    Optional PEM file of the CA that signed the collector's certificate.

.PARAMETER Source
    Folder holding dsreg-agent.exe and agent.toml (defaults to the script's folder).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)] [string] $Collector,
    [string] $TokenFile,
    [string] $CaFile,
    [string] $Source = $PSScriptRoot,
    [int] $IntervalMinutes = 60
)

$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Install-DsregAgent.ps1 must run elevated (as Administrator or SYSTEM).'
}

$binDir = Join-Path $env:ProgramFiles 'dsreg-agent'
$dataDir = Join-Path $env:ProgramData 'dsreg-agent'
$exe = Join-Path $binDir 'dsreg-agent.exe'
$config = Join-Path $dataDir 'agent.toml'

New-Item -ItemType Directory -Force -Path $binDir, $dataDir, (Join-Path $dataDir 'spool') | Out-Null
Copy-Item -Force (Join-Path $Source 'dsreg-agent.exe') $exe

if (-not (Test-Path $config)) {
    $lines = @(
        '# dsreg-agent configuration (written by Install-DsregAgent.ps1)',
        "collector = `"$Collector`"",
        "interval_minutes = $IntervalMinutes",
        "spool_dir = `"$($dataDir -replace '\\','\\')\\spool`""
    )
    if ($TokenFile) {
        Copy-Item -Force $TokenFile (Join-Path $dataDir 'agent.token')
        $lines += "token_file = `"$($dataDir -replace '\\','\\')\\agent.token`""
    }
    if ($CaFile) {
        Copy-Item -Force $CaFile (Join-Path $dataDir 'collector-ca.pem')
        $lines += "ca_file = `"$($dataDir -replace '\\','\\')\\collector-ca.pem`""
    }
    Set-Content -Path $config -Value $lines -Encoding UTF8
}

# Only SYSTEM and Administrators may read the data folder (token, spool with device state);
# users may read the binary's folder only.
& icacls.exe $dataDir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null

$taskPath = '\dsreg-fleet\'
$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -RestartCount 999 `
    -RestartInterval (New-TimeSpan -Minutes 5) -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -MultipleInstances IgnoreNew
$systemAction = New-ScheduledTaskAction -Execute $exe -Argument "run --config `"$config`""
$systemTrigger = New-ScheduledTaskTrigger -AtStartup
$systemPrincipal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\SYSTEM' -LogonType ServiceAccount -RunLevel Highest
Register-ScheduledTask -Force -TaskPath $taskPath -TaskName 'dsreg-agent (SYSTEM)' `
    -Action $systemAction -Trigger $systemTrigger -Principal $systemPrincipal -Settings $settings | Out-Null

$userAction = New-ScheduledTaskAction -Execute $exe `
    -Argument "send --user-context --collector `"$Collector`""
$userTrigger = New-ScheduledTaskTrigger -AtLogOn
$userPrincipal = New-ScheduledTaskPrincipal -GroupId 'S-1-5-32-545' -RunLevel Limited  # BUILTIN\Users
$userSettings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Minutes 5)
Register-ScheduledTask -Force -TaskPath $taskPath -TaskName 'dsreg-agent (user)' `
    -Action $userAction -Trigger $userTrigger -Principal $userPrincipal -Settings $userSettings | Out-Null

Start-ScheduledTask -TaskPath $taskPath -TaskName 'dsreg-agent (SYSTEM)'
Write-Output "dsreg-agent installed to $binDir; reporting to $Collector."
