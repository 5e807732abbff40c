; Inno Setup 6 script: CXR Screener for Windows (x64).
;
; Build the onedir bundle first (python scripts\build_bundle.py -> dist\CXRScreener\), then:
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 installer\cxr-screener.iss
; Output: dist\CXRScreener-<version>-setup.exe
;
; The setup asks whether to install for all users (needs administrator rights, into
; Program Files) or only for the current user (no rights needed, into
; %LOCALAPPDATA%\Programs). Silent installs: /VERYSILENT /ALLUSERS or /CURRENTUSER;
; uninstall: unins000.exe /VERYSILENT in the install folder, or Settings > Apps.
;
; The per-user data (settings, retrained models in %LOCALAPPDATA%\CXRScreener\models, the
; audit log) is not touched by install, upgrade or uninstall.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\dist\CXRScreener"
#endif
#ifndef OutputDir
  #define OutputDir "..\dist"
#endif
#ifndef AppIcon
  #define AppIcon "..\assets\icons\cxr-screener.ico"
#endif

#define AppName "CXR Screener"
#define AppExe "CXRScreener.exe"
#define AppCliExe "CXRScreener-cli.exe"
#define ProgId "CXRScreener.DICOM"

[Setup]
; Never change AppId: upgrades and the uninstaller find the installation by it.
AppId={{6E0F4C2B-8F3A-4D5E-9C61-2B7A0D4E9F13}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=CXR Screener developers
AppComments=Offline chest X-ray COVID-19 screening: decision support, not a diagnosis.
VersionInfoVersion={#AppVersion}
VersionInfoProductName={#AppName}
; Per-machine or per-user: the user chooses (dialog), or /ALLUSERS /CURRENTUSER.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
UsePreviousAppDir=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
ChangesAssociations=yes
CloseApplications=yes
RestartApplications=no
InfoBeforeFile=windows-notice.txt
OutputDir={#OutputDir}
OutputBaseFilename=CXRScreener-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
LZMANumBlockThreads=2
WizardStyle=modern
UninstallDisplayName={#AppName} {#AppVersion}
UninstallDisplayIcon={app}\{#AppExe}
#if FileExists(AddBackslash(SourcePath) + AppIcon)
SetupIconFile={#AppIcon}
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"
Name: "french"; MessagesFile: "compiler:Languages\French.isl"
Name: "spanish"; MessagesFile: "compiler:Languages\Spanish.isl"
Name: "portuguese"; MessagesFile: "compiler:Languages\Portuguese.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"
Name: "associate"; Description: "Open DICOM files (.dcm) with {#AppName}"; GroupDescription: "File associations:"

[InstallDelete]
; An upgrade replaces the whole bundle: no stale libraries from an older version.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{userdocs}"; Comment: "Chest X-ray screening (decision support)"
Name: "{group}\{#AppName} self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\{#AppCliExe}"" selftest"; WorkingDir: "{userdocs}"; IconFilename: "{app}\{#AppExe}"; Comment: "Check the models and image decoders"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{userdocs}"; Tasks: desktopicon

[Registry]
; .dcm association under HKLM (all users) or HKCU (current user): HKA picks the right one.
Root: HKA; Subkey: "Software\Classes\.dcm\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}"; ValueType: string; ValueName: ""; ValueData: "DICOM image"; Flags: uninsdeletekey; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"",0"; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""; Tasks: associate
; "Open with" list: the program and the types it opens.
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}"; ValueType: string; ValueName: "FriendlyAppName"; ValueData: "{#AppName}"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".dcm"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".png"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".jpg"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".jpeg"; ValueData: ""

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only what the program itself may leave in its folder; the user's data stays.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"
